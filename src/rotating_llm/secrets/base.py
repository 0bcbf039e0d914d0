"""The secret store interface: a TTL cache over one backend read, never showing values."""

from __future__ import annotations

import asyncio
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from rotating_llm.errors import SecretStoreError

__all__ = ["SecretStore"]


@dataclass
class _Cached:
    value: SecretStr
    fetched_at: float  # time.monotonic()


class SecretStore(ABC):
    """Reads API keys by ``key_id`` from a backend and caches them for ``cache_ttl`` seconds.

    Subclasses implement :meth:`_fetch` (one backend read, returning the plain value or
    raising :class:`SecretStoreError`). Values are held as ``SecretStr`` and never
    appear in a repr, an exception or a log line.
    """

    #: Short name of the backend (``env``, ``vault``, ``aws``).
    name: str = "base"

    def __init__(self, cache_ttl: float = 300.0) -> None:
        self.cache_ttl = cache_ttl
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(cached={len(self._cache)}, cache_ttl={self.cache_ttl})"

    @abstractmethod
    def _fetch(self, key_id: str) -> str:
        """Read the secret of ``key_id`` from the backend (uncached)."""

    def location(self, key_id: str) -> str:
        """Where the secret of ``key_id`` is looked up (a variable name, a path)."""
        return key_id

    def get_secret(self, key_id: str) -> SecretStr:
        """The secret of ``key_id``, from the cache while it is fresh.

        Raises:
            SecretStoreError: the backend has no usable secret for ``key_id``.
        """
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key_id)
            if hit is not None and (now - hit.fetched_at) < self.cache_ttl:
                return hit.value
        try:
            raw = self._fetch(key_id)
        except SecretStoreError:
            raise
        except Exception as exc:  # a backend library's own error: name it, never its args
            raise SecretStoreError(
                f"cannot read secret for key {key_id!r} from the {self.name} store "
                f"({type(exc).__name__})",
                key_id=key_id,
                store=self.name,
            ) from None
        if not raw or not raw.strip():
            raise SecretStoreError(
                f"secret for key {key_id!r} in the {self.name} store "
                f"({self.location(key_id)}) is empty",
                key_id=key_id,
                store=self.name,
            )
        value = SecretStr(raw.strip())
        from rotating_llm.redaction import register_secret  # masked in every log from now on

        register_secret(value)
        with self._lock:
            self._cache[key_id] = _Cached(value, time.monotonic())
        return value

    async def aget_secret(self, key_id: str) -> SecretStr:
        """Async twin of :meth:`get_secret`; backend reads run in a worker thread."""
        with self._lock:
            hit = self._cache.get(key_id)
            if hit is not None and (time.monotonic() - hit.fetched_at) < self.cache_ttl:
                return hit.value
        return await asyncio.to_thread(self.get_secret, key_id)

    def invalidate(self, key_id: str | None = None) -> None:
        """Forget the cached copy of ``key_id`` (or of every key), so the next read is fresh."""
        with self._lock:
            if key_id is None:
                self._cache.clear()
            else:
                self._cache.pop(key_id, None)

    def cache_age(self, key_id: str) -> float | None:
        """Seconds since the cached copy of ``key_id`` was read, or ``None`` if not cached."""
        with self._lock:
            hit = self._cache.get(key_id)
        return None if hit is None else time.monotonic() - hit.fetched_at

    def describe(self, key_id: str) -> dict[str, Any]:
        """What :func:`test_secret_access` reports: found or not, where, cache age; no value."""
        age_before = self.cache_age(key_id)
        report: dict[str, Any] = {
            "key_id": key_id,
            "store": self.name,
            "location": self.location(key_id),
            "found": False,
            "cached": age_before is not None,
            "cache_age_seconds": age_before,
            "error": None,
        }
        try:
            secret = self.get_secret(key_id)
        except SecretStoreError as exc:
            report["error"] = str(exc)
            return report
        report["found"] = True
        report["length"] = len(secret.get_secret_value())
        return report

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release backend clients, if any."""
