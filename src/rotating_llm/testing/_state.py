"""The simulator's mutable state: keys, limits, faults and stats, behind one lock."""

from __future__ import annotations

import datetime as dt
import threading
import time
import zoneinfo
from typing import TYPE_CHECKING, Any, Literal

from rotating_llm.testing._config import Limits, TpmCounts, fingerprint
from rotating_llm.testing._faults import FaultBook, FaultRule
from rotating_llm.testing._limits import Windows
from rotating_llm.testing._quota import Admission, Quotas, QuotaView, given_limits
from rotating_llm.testing._stats import KeyStats

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

__all__ = ["Admission", "KeyProblem", "State"]

KeyProblem = Literal["missing", "invalid", "suspended"]

#: Operations the control endpoint (and process mode) may call.
CONTROL_OPS = frozenset(
    {
        "set_limits",
        "clear_limits",
        "set_true_limits",
        "clear_true_limits",
        "spend",
        "project_usage",
        "revoke",
        "suspend",
        "restore",
        "inject",
        "remove_fault",
        "clear_faults",
        "faults",
        "stats",
        "server_stats",
        "key_stats",
        "reset_stats",
        "reset",
    }
)


class State:
    """Everything a running simulator knows; every method is thread-safe.

    Args:
        limits: Default per-key limits.
        window: RPM/TPM window in seconds.
        day_window: RPD window in seconds.
        keys: Allow-list of keys (``None``: any non-empty key is valid).
        tpm_counts: ``"input"`` (prompt tokens, like Gemini) or ``"total"``.
        day_reset: IANA time zone whose midnight resets RPD and TPD (``None``: sliding).
        projects: Project name -> its keys; a project's keys share its quota.
        project_limits: The limits of every project.
        true_limits: Key -> that key's own limits, e.g. ``{"k1": {"rpm": 2}}``.
        clock: Monotonic clock, replaceable in tests.
        wall: Wall clock for ``day_reset``, replaceable in tests.
    """

    def __init__(
        self,
        limits: Limits,
        *,
        window: float = 60.0,
        day_window: float = 86_400.0,
        keys: Iterable[str] | None = None,
        tpm_counts: TpmCounts = "input",
        day_reset: str | None = None,
        projects: Mapping[str, Iterable[str]] | None = None,
        project_limits: Limits | None = None,
        true_limits: Mapping[str, Mapping[str, int]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._lock = threading.Lock()
        self.defaults = limits
        self.tpm_counts = tpm_counts
        self.clock = clock
        self._allowed: set[str] | None = None if keys is None else set(keys)
        self._revoked: set[str] = set()
        self._suspended: set[str] = set()
        windows = Windows(window, day_window, _zone(day_reset), wall)
        self._quotas = Quotas(limits, windows, projects, project_limits, true_limits)
        self._faults = FaultBook()
        self._stats: dict[str, KeyStats] = {}
        self._in_flight = 0
        self._peak_in_flight = 0
        self._handled = 0

    # -- request path -------------------------------------------------------

    def enter(self) -> None:
        """Count a model request starting (for the concurrency gauge)."""
        with self._lock:
            self._in_flight += 1
            self._handled += 1
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)

    def leave(self) -> None:
        """Count a model request finishing."""
        with self._lock:
            self._in_flight -= 1

    def server_stats(self) -> dict[str, int]:
        """Requests handled, in flight now, and the most ever in flight at once."""
        with self._lock:
            return {
                "handled": self._handled,
                "in_flight": self._in_flight,
                "peak_in_flight": self._peak_in_flight,
            }

    def key_problem(self, key: str | None) -> KeyProblem | None:
        """Say what is wrong with a request's key, if anything."""
        if not key:
            return "missing"
        with self._lock:
            if key in self._revoked or (self._allowed is not None and key not in self._allowed):
                return "invalid"
            if key in self._suspended:
                return "suspended"
        return None

    def _key_stats(self, key: str) -> KeyStats:
        st = self._stats.get(key)
        if st is None:
            st = self._stats[key] = KeyStats()
        return st

    def record(self, key: str, **counters: int) -> None:
        """Add to a key's counters (``requests=1``, ``served=1``, ...)."""
        with self._lock:
            st = self._key_stats(key)
            for name, value in counters.items():
                setattr(st, name, getattr(st, name) + value)

    def pick_fault(self, key: str) -> FaultRule | None:
        """Return the fault rule hitting this request, counting it."""
        with self._lock:
            rule = self._faults.pick(key)
            if rule is not None:
                self._key_stats(key).add_fault(rule.fault.value)
            return rule

    def limits_for(self, key: str) -> Limits:
        """Return a key's quota: its project's, else its overrides over the defaults."""
        with self._lock:
            return self._quotas.limits_for(key)

    def project_of(self, key: str) -> str | None:
        """The project ``key`` belongs to, if any."""
        return self._quotas.project_of(key)

    def admit(self, key: str, input_tokens: int, output_tokens: int) -> Admission:
        """Charge a request to the key's windows, or refuse it (counting the 429)."""
        cost = input_tokens + (output_tokens if self.tpm_counts == "total" else 0)
        with self._lock:
            admission = self._quotas.admit(key, self.clock(), cost)
            rejection = admission.rejection
            st = self._key_stats(key)
            if rejection is None:
                st.served += 1
                st.input_tokens += input_tokens
                st.output_tokens += output_tokens
            else:
                st.rate_limited += 1
                st.rate_limited_daily += int(rejection.per_day)
        return admission

    def quota_view(self, key: str) -> tuple[QuotaView, QuotaView]:
        """The key's tightest per-minute requests and tokens views now."""
        with self._lock:
            return self._quotas.views(key, self.clock())

    # -- control ------------------------------------------------------------

    def control(self, op: str, args: dict[str, Any]) -> Any:
        """Run a control operation by name (the HTTP control endpoint uses this)."""
        if op not in CONTROL_OPS:
            raise ValueError(f"unknown control operation {op!r}")
        method: Callable[..., Any] = getattr(self, op)
        return method(**args)

    def set_limits(
        self,
        key: str,
        rpm: int | None = None,
        tpm: int | None = None,
        rpd: int | None = None,
        tpd: int | None = None,
    ) -> None:
        """Override some limits of a key outside any project; ``None`` keeps the value."""
        _check_key_arg(key)
        over = given_limits(rpm=rpm, tpm=tpm, rpd=rpd, tpd=tpd)
        with self._lock:
            self._quotas.set_limits(key, over)

    def clear_limits(self, key: str) -> None:
        """Return a key to the default limits."""
        with self._lock:
            self._quotas.clear_limits(key)

    def set_true_limits(
        self,
        key: str,
        rpm: int | None = None,
        tpm: int | None = None,
        rpd: int | None = None,
        tpd: int | None = None,
    ) -> None:
        """Set some of a key's true limits (its own; ``None`` keeps the value)."""
        _check_key_arg(key)
        over = given_limits(rpm=rpm, tpm=tpm, rpd=rpd, tpd=tpd)
        with self._lock:
            self._quotas.set_true_limits(key, over)

    def clear_true_limits(self, key: str) -> None:
        """Remove a key's true limits."""
        with self._lock:
            self._quotas.clear_true_limits(key)

    def spend(self, key: str, requests: int = 0, tokens: int = 0) -> None:
        """Count another app's use of ``key`` now, in its window and its project's.

        Limits are not checked: the other app's requests were served.
        """
        _check_key_arg(key)
        for name, value in (("requests", requests), ("tokens", tokens)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"spend: {name} must be a non-negative integer, got {value!r}")
        if not requests and not tokens:
            raise ValueError("spend: give requests or tokens (both are 0)")
        with self._lock:
            self._quotas.spend(key, self.clock(), requests, tokens)

    def project_usage(self, project: str) -> dict[str, int]:
        """A project's requests and tokens inside its current windows."""
        with self._lock:
            return self._quotas.project_usage(project, self.clock())

    def revoke(self, key: str) -> None:
        """Make a key invalid from now on (``API_KEY_INVALID`` / ``401``)."""
        _check_key_arg(key)
        with self._lock:
            self._revoked.add(key)

    def suspend(self, key: str) -> None:
        """Make a key suspended from now on (``403 PERMISSION_DENIED``)."""
        _check_key_arg(key)
        with self._lock:
            self._suspended.add(key)

    def restore(self, key: str) -> None:
        """Undo ``revoke``/``suspend`` and add the key to the allow-list, if any."""
        _check_key_arg(key)
        with self._lock:
            self._revoked.discard(key)
            self._suspended.discard(key)
            if self._allowed is not None:
                self._allowed.add(key)

    def inject(self, fault: str, **options: Any) -> int:
        """Add a fault rule (see :meth:`FaultBook.add`); return its id."""
        with self._lock:
            return self._faults.add(fault, **options).id

    def remove_fault(self, rule_id: int) -> bool:
        """Remove one fault rule; return whether it existed."""
        with self._lock:
            return self._faults.remove(rule_id)

    def clear_faults(self, key: str | None = None) -> None:
        """Remove every fault rule, or those bound to ``key``."""
        with self._lock:
            self._faults.clear(key)

    def faults(self) -> list[dict[str, Any]]:
        """Describe the active fault rules."""
        with self._lock:
            return [r.describe() for r in self._faults.rules()]

    def stats(self) -> dict[str, dict[str, Any]]:
        """Return every key's counters, keyed by :func:`fingerprint`."""
        with self._lock:
            now = self.clock()
            out: dict[str, dict[str, Any]] = {}
            for key, st in self._stats.items():
                data = st.to_dict()
                data["window"] = self._quotas.key_usage(key, now)
                out[fingerprint(key)] = data
            return out

    def key_stats(self, key: str) -> dict[str, Any]:
        """Return one key's counters, looked up by the full key."""
        with self._lock:
            data = self._stats.get(key, KeyStats()).to_dict()
            data["window"] = self._quotas.key_usage(key, self.clock())
            return data

    def reset_stats(self) -> None:
        """Zero every counter (quota windows are kept)."""
        with self._lock:
            self._stats.clear()
            self._handled = 0
            self._peak_in_flight = self._in_flight

    def reset(self) -> None:
        """Forget counters, quota windows, fault rules, overrides, revocations."""
        with self._lock:
            self._stats.clear()
            self._quotas.reset()
            self._faults.clear()
            self._revoked.clear()
            self._suspended.clear()
            self._handled = 0
            self._peak_in_flight = self._in_flight


def _zone(name: str | None) -> dt.tzinfo | None:
    """Return the time zone ``day_reset`` names, or raise ``ValueError``."""
    if name is None:
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"day_reset must be an IANA time zone name, got {name!r}") from None


def _check_key_arg(key: object) -> None:
    if not isinstance(key, str) or not key:
        raise ValueError("key must be a non-empty string")
