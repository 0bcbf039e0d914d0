"""Per-tenant caps: which cap a tenant has in a pool, as the acquire script takes it.

A cap comes from the keys file's ``tenants`` (an entry for the tenant, else the ``"*"``
entry) or, for a tenant the file does not name, from the settings
``ROTATING_LLM_TENANT_RPM`` / ``_TPM`` / ``_SHARE``. A share is of the pool's capacity:
the sum of its active keys' limits as the file gives them (learned limits are not
counted). The script counts a capped tenant in its own sliding window in the pool's hash
tag, under the digest of its name (a tenant's name, often an e-mail, never reaches Redis).
A tenant without a cap costs the acquire nothing (one empty argument).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from rotating_llm.limiter._queue import tenant_digest
from rotating_llm.limiter._schema import TENANT_MARK

#: The most capped tenants of a pool whose windows a heartbeat reads (the seed of the
#: degraded share): the latest this process asked for.
SNAPSHOT_TENANTS = 256
if TYPE_CHECKING:
    from rotating_llm.config import Settings
    from rotating_llm.keys.models import APIKey, TenantCap
    from rotating_llm.limiter._limiter import RedisLimiter

__all__ = ["TenantCaps", "tenant_status"]

_EVERY = "*"


def _capacity(keys: Sequence[APIKey]) -> tuple[int, int]:
    """The pool's RPM and TPM (0: unknown, a key has no such limit)."""
    rpm = 0 if any(k.rpm is None for k in keys) else sum(int(k.rpm or 0) for k in keys)
    tpm = 0 if any(k.tpm is None for k in keys) else sum(int(k.tpm or 0) for k in keys)
    return rpm, tpm


def _lower(a: int, b: int) -> int:
    """The lower of two caps (0: none)."""
    if a and b:
        return min(a, b)
    return a or b


class TenantCaps:
    """The caps of tenants, and the acquire arguments they make per pool."""

    def __init__(self, settings: Settings) -> None:
        self._default = (settings.tenant_rpm, settings.tenant_tpm, settings.tenant_share)
        self._caps: dict[str, TenantCap] = {}
        self._limits: dict[tuple[str, str], str] = {}  # (pool, tenant) -> limits string
        #: pool -> window ids of the capped tenants asked for (oldest first, bounded)
        self._seen: dict[str, dict[str, None]] = {}
        #: window ids of the tenants the file caps by name
        self._named: list[str] = []
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        """Whether any tenant may be capped."""
        return bool(self._caps) or any(v is not None for v in self._default)

    def set_caps(self, caps: Iterable[TenantCap]) -> None:
        """Replace the file's caps (checked by the loader: one entry per tenant)."""
        table = {c.tenant: c for c in caps}
        named = [TENANT_MARK + tenant_digest(t) for t in table if t != _EVERY]
        with self._lock:
            self._caps = table
            self._named = named[:SNAPSHOT_TENANTS]
            self._limits = {}

    def keys_changed(self) -> None:
        """Forget the computed caps: a pool's capacity may have changed."""
        with self._lock:
            self._limits = {}

    def capped(self, pool: str) -> list[str]:
        """The window ids (``~t:<digest>``) of the tenants the file caps by name and of
        the capped tenants asked for in ``pool`` (at most :data:`SNAPSHOT_TENANTS`)."""
        with self._lock:
            seen = list(self._seen.get(pool, ()))
            named = self._named
        out = list(dict.fromkeys([*named, *reversed(seen)]))
        return out[:SNAPSHOT_TENANTS]

    def caps(self) -> list[TenantCap]:
        """The file's caps."""
        return list(self._caps.values())

    def limits(self, pool: str, tenant: str, keys: Sequence[APIKey]) -> tuple[int, int]:
        """The RPM and TPM cap of ``tenant`` in ``pool`` of ``keys`` (0: none)."""
        cap = self._caps.get(tenant) or self._caps.get(_EVERY)
        rpm, tpm, share = (cap.rpm, cap.tpm, cap.share) if cap else self._default
        out_rpm, out_tpm = int(rpm or 0), int(tpm or 0)
        if share is not None:
            pool_rpm, pool_tpm = _capacity(keys)
            if pool_rpm:
                out_rpm = _lower(out_rpm, max(1, math.floor(share * pool_rpm)))
            if pool_tpm:
                out_tpm = _lower(out_tpm, max(1, math.floor(share * pool_tpm)))
        return out_rpm, out_tpm

    def args(self, pool: str, tenant: str | None, keys: Sequence[APIKey]) -> str:
        """The acquire's ``tenant_cap``: ``"rpm tpm 0 0 1 -"`` (0: none), ``""`` no cap."""
        if tenant is None or not self.active:
            return ""
        found = self._limits.get((pool, tenant))
        if found is None:
            rpm, tpm = self.limits(pool, tenant, keys)
            found = f"{rpm} {tpm} 0 0 1 -" if rpm or tpm else ""
            with self._lock:
                if len(self._limits) > 10_000:
                    self._limits = {}
                self._limits[(pool, tenant)] = found
        if found:
            self._note(pool, TENANT_MARK + tenant_digest(tenant))
        return found

    def _note(self, pool: str, tid: str) -> None:
        """Remember ``tid`` as the latest capped tenant asked for in ``pool``."""
        with self._lock:
            seen = self._seen.setdefault(pool, {})
            seen.pop(tid, None)
            seen[tid] = None
            if len(seen) > SNAPSHOT_TENANTS:
                del seen[next(iter(seen))]


def tenant_status(limiter: RedisLimiter, tenant: str, pools: Sequence[str]) -> list[dict[str, Any]]:
    """``tenant``'s caps and usage in each of ``pools`` (one status call per capped pool).

    Raises:
        ConfigError: ``tenant`` is not a tenant's name.
    """
    from rotating_llm._bounds import check_tenant
    from rotating_llm.errors import ConfigError

    name = check_tenant(tenant, ConfigError)
    assert name is not None  # (a str was checked)
    out: list[dict[str, Any]] = []
    for pool in pools:
        keys = limiter.keys_of(pool)
        rpm, tpm = limiter.tenants.limits(pool, name, keys)
        row: dict[str, Any] = {
            "model": pool,
            "rpm_cap": rpm or None,
            "tpm_cap": tpm or None,
            "rpm_count": 0,
            "tpm_used": 0,
        }
        if (rpm or tpm) and keys:
            tid = TENANT_MARK + tenant_digest(name)  # the queue's digest of a tenant
            use = limiter.usage(pool, [tid])[tid]
            row.update(rpm_count=use.rpm_count, tpm_used=use.tpm_used)
        out.append(row)
    return out
