"""The quota side of ``FakeProvider``'s controls: limits, true limits, spend, usage."""

from __future__ import annotations

from typing import Any

__all__ = ["QuotaControls"]


class QuotaControls:
    """Quota controls of a running simulator (mixed into ``FakeProvider``)."""

    def _call(self, op: str, **args: Any) -> Any:  # pragma: no cover - FakeProvider's
        raise NotImplementedError

    def set_limits(
        self,
        key: str,
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        rpd: int | None = None,
        tpd: int | None = None,
    ) -> None:
        """Override some limits of a key outside any project (``None`` keeps the value)."""
        self._call("set_limits", key=key, rpm=rpm, tpm=tpm, rpd=rpd, tpd=tpd)

    def clear_limits(self, key: str) -> None:
        """Return a key to the default limits."""
        self._call("clear_limits", key=key)

    def set_true_limits(
        self,
        key: str,
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        rpd: int | None = None,
        tpd: int | None = None,
    ) -> None:
        """Set some of a key's true limits now (its own, on top of its project's)."""
        self._call("set_true_limits", key=key, rpm=rpm, tpm=tpm, rpd=rpd, tpd=tpd)

    def clear_true_limits(self, key: str) -> None:
        """Remove a key's true limits (those given to the constructor too)."""
        self._call("clear_true_limits", key=key)

    def spend(self, key: str, *, requests: int = 0, tokens: int = 0) -> None:
        """Simulate another app using ``key``: count usage now, as served requests count.

        ``requests`` requests and ``tokens`` tokens enter the key's windows and its
        project's (limits are not checked: the other app was served).
        """
        self._call("spend", key=key, requests=requests, tokens=tokens)

    def project_usage(self, project: str) -> dict[str, int]:
        """A project's requests and tokens inside its current windows."""
        result: dict[str, int] = self._call("project_usage", project=project)
        return result

    def usage(self, key: str) -> dict[str, int]:
        """A key's requests and tokens inside its current windows."""
        data: dict[str, int] = self._call("key_stats", key=key)["window"]
        return data
