"""Per-user and global request limits (``rl:user:<id>``, ``rl:global``) on exact windows.

Deprecated: a per-tenant cap (``acquire(..., tenant=)`` with the keys file's ``tenants``
or ``ROTATING_LLM_TENANT_RPM``/``_TPM``/``_SHARE``) limits a user in the same atomic call
that picks the key, and the pool's own capacity is the global limit. This limiter stays
for the original design's callers and warns once when made.
"""

from __future__ import annotations

import itertools
import os
import threading
import warnings
from dataclasses import dataclass
from typing import Any

from rotating_llm.config import Settings
from rotating_llm.errors import ConfigError
from rotating_llm.storage import FailoverStore, Store, open_store

__all__ = ["RateLimitDecision", "UserRateLimiter", "get_rate_limiter"]

_US = 1_000_000
_TAG = "{rl}"  # one slot for every user and the global window: one script sees both


@dataclass(frozen=True)
class RateLimitDecision:
    """The answer of :meth:`UserRateLimiter.check_rate_limit`.

    Attributes:
        allowed: Whether the request may proceed (it was counted if so).
        retry_after: Seconds until it would be allowed (0 when allowed).
        limited_by: ``"user"``, ``"global"`` or ``None``.
        user_count: Requests of this user in the current window (this one included).
        global_count: Requests of everyone in the current window.
    """

    allowed: bool
    retry_after: float
    limited_by: str | None
    user_count: int
    global_count: int

    def __bool__(self) -> bool:
        return self.allowed


class UserRateLimiter:
    """Sliding-window limits per user (``USER_RPM_DEFAULT``) and overall (``GLOBAL_RPM_MAX``).

    One script call checks both windows and counts the request in both, or in neither.

    Deprecated in favour of per-tenant caps (see the module's docstring): it warns with a
    ``DeprecationWarning`` when made.
    """

    def __init__(self, settings: Settings | None = None, store: Store | None = None) -> None:
        warnings.warn(
            "UserRateLimiter is deprecated: pass the user as acquire(..., tenant=) (the "
            "RequestRouter's user_id, the LiteLLM request's user) and cap tenants with the "
            "keys file's 'tenants' or ROTATING_LLM_TENANT_RPM / _TPM / _SHARE",
            DeprecationWarning,
            stacklevel=2,
        )
        self.settings = settings or Settings.from_env()
        self.store = FailoverStore(
            store or open_store(self.settings),
            self.settings.on_store_failure,
            self.settings.store_retry_interval,
        )
        self._ids = itertools.count()
        self._pid = f"{os.getpid()}-{id(self):x}"

    def __repr__(self) -> str:
        return (
            f"UserRateLimiter(user_rpm={self.settings.user_rpm_default}, "
            f"global_rpm={self.settings.global_rpm_max}, store={self.store.primary.description!r})"
        )

    def _args(self, store: Store, user_id: str, limit: int | None) -> tuple[list[str], list[Any]]:
        if not isinstance(user_id, str) or not user_id or len(user_id) > 256:
            raise ConfigError("user_id must be a non-empty string of at most 256 characters")
        user_limit = self.settings.user_rpm_default if limit is None else limit
        if user_limit <= 0:
            raise ConfigError(f"limit must be > 0, got {user_limit}")
        keys = [store.key(_TAG, "user", user_id), store.key(_TAG, "global")]
        args = [
            int(self.settings.window_seconds * _US),
            user_limit,
            self.settings.global_rpm_max,
            f"{self._pid}-{next(self._ids)}",
        ]
        return keys, args

    @staticmethod
    def _decision(raw: list[Any]) -> RateLimitDecision:
        return RateLimitDecision(
            allowed=bool(int(raw[0])),
            retry_after=int(raw[1]) / _US,
            limited_by=str(raw[4]) or None,
            user_count=int(raw[2]),
            global_count=int(raw[3]),
        )

    def check_rate_limit(self, user_id: str, limit: int | None = None) -> RateLimitDecision:
        """Count one request of ``user_id`` if both windows have room.

        Args:
            user_id: The user.
            limit: This user's requests per window (default ``USER_RPM_DEFAULT``).
        """

        def op(store: Store) -> RateLimitDecision:
            keys, args = self._args(store, user_id, limit)
            return self._decision(store.call("user_limit", keys, args))

        return self.store.run("user rate limit", op)

    async def acheck_rate_limit(self, user_id: str, limit: int | None = None) -> RateLimitDecision:
        """Async twin of :meth:`check_rate_limit`."""

        async def op(store: Store) -> RateLimitDecision:
            keys, args = self._args(store, user_id, limit)
            return self._decision(await store.acall("user_limit", keys, args))

        return await self.store.arun("user rate limit", op)

    def close(self) -> None:
        """Close store connections."""
        self.store.close()


_default: UserRateLimiter | None = None
_lock = threading.Lock()


def get_rate_limiter(settings: Settings | None = None) -> UserRateLimiter:
    """The process's default user limiter (a new default when ``settings`` is given)."""
    global _default
    with _lock:
        if _default is None or settings is not None:
            _default = UserRateLimiter(settings)
        return _default
