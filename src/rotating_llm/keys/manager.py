"""``KeyManager``: the pool of keys, its leases, statuses and health (the original design's API)."""

from __future__ import annotations

import itertools
import logging
import sys
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rotating_llm.config import Settings
from rotating_llm.errors import (
    ConfigError,
    KeyNotFoundError,
    StoreError,
)
from rotating_llm.events import emit
from rotating_llm.keys._default import (  # the default manager, in a light module
    default_secret_store,
    get_key_manager,
    get_redis_limiter,
)
from rotating_llm.keys._groups import group_problem, group_table
from rotating_llm.keys._leasing import Leasing
from rotating_llm.keys._status import group_status, key_status, learned_group
from rotating_llm.keys.loader import load_keys_document, save_keys_file
from rotating_llm.keys.models import APIKey, QuotaGroup, TenantCap

if TYPE_CHECKING:
    from rotating_llm.keys._heartbeat import Heartbeat
    from rotating_llm.keys._prober import Prober
    from rotating_llm.limiter._learn_ops import LearnedRecord
from rotating_llm.limiter import KeyUsage, RedisLimiter
from rotating_llm.limiter._group_ops import group_name
from rotating_llm.limiter._key_check import check_keys
from rotating_llm.limiter._schema import LEARNED_GROUP, LEARNED_GROUP_KIND
from rotating_llm.secrets import SecretStore, get_secret_store
from rotating_llm.storage import FailoverStore, open_store

__all__ = ["KeyManager", "default_secret_store", "get_key_manager", "get_redis_limiter"]

logger = logging.getLogger("rotating_llm.keys")


class KeyManager(Leasing):
    """A pool of API keys per model, sharing limits with every process on the same store.

    Args:
        keys: The keys; default: read ``key_store_path``.
        quota_groups: Limits that several keys share (keys name them in
            ``quota_group``); default: those of ``key_store_path`` when it is read.
        tenant_caps: Per-tenant caps (``tenant`` ``"*"``: every other tenant); default:
            the ``tenants`` of ``key_store_path`` when it is read, else the settings'.
        key_store_path: A keys file in the original design's format.
        settings: Default: :meth:`Settings.from_env`.
        secret_store: Default: the store ``settings.secret_store_type`` names.
        probe: A long-lived manager: beat a heartbeat (on a Redis, when
            ``heartbeat_seconds`` > 0) and take part in the key prober's election (when
            ``probe_seconds`` > 0); one-shot tools such as the CLI pass False.
    """

    def __init__(
        self,
        keys: Iterable[APIKey] | None = None,
        *,
        quota_groups: Iterable[QuotaGroup] | None = None,
        tenant_caps: Iterable[TenantCap] | None = None,
        key_store_path: str | Path | None = None,
        settings: Settings | None = None,
        secret_store: SecretStore | None = None,
        probe: bool = True,
    ) -> None:
        self.settings = settings or Settings.from_env()
        if self.settings.redact_logs:
            from rotating_llm.redaction import install_redaction

            install_redaction()
        self.key_store_path = Path(key_store_path) if key_store_path is not None else None
        if keys is None and self.key_store_path:
            doc = load_keys_document(self.key_store_path)
            keys = doc.keys
            if quota_groups is None:
                quota_groups = doc.quota_groups
            if tenant_caps is None:
                tenant_caps = doc.tenants
        self._keys: dict[str, APIKey] = _key_table(keys or [])
        self._keys_version = 0
        self._groups: dict[str, QuotaGroup] = _checked_groups(self._keys, quota_groups or ())
        self._max_tpm = _max_tpm_by_model(self._keys.values())
        _report_window_mismatch(self._keys.values(), self.settings.window_seconds)
        self.secret_store = secret_store or get_secret_store(self.settings)
        self.store = FailoverStore(
            open_store(self.settings),
            self.settings.on_store_failure,
            self.settings.store_retry_interval,
        )
        self.limiter = RedisLimiter(self.store, self.settings)
        self.limiter.set_keys(self._keys.values(), self._groups.values())
        self.limiter.tenants.set_caps(tenant_caps or ())
        self._excluded: dict[str, float] = {}
        self._rr = itertools.count()
        self._lock = threading.Lock()
        self._prober = _start_prober(self) if probe else None
        self._heartbeat = _start_heartbeat(self) if probe else None

    def __repr__(self) -> str:
        return (
            f"KeyManager(keys={len(self._keys)}, models={self.models()}, "
            f"store={self.store.primary.description!r})"
        )

    # -- keys -------------------------------------------------------------------------

    @property
    def keys(self) -> list[APIKey]:
        """Every key, active or not."""
        return list(self._keys.values())

    @property
    def keys_version(self) -> int:
        """A counter bumped by every change of the keys (add, remove, reload, set_keys):
        what caches per key (provider models) compare to know they must look again."""
        return self._keys_version

    def get_key(self, key_id: str) -> APIKey:
        """The key ``key_id``."""
        try:
            return self._keys[key_id]
        except KeyError:
            raise KeyNotFoundError(key_id) from None

    def models(self) -> list[str]:
        """Models (pools) with at least one active key."""
        return sorted({k.model_name for k in self._keys.values() if k.active})

    @property
    def quota_groups(self) -> list[QuotaGroup]:
        """Every quota group."""
        return list(self._groups.values())

    def _apply(
        self,
        keys: dict[str, APIKey],
        persist: bool,
        groups: Iterable[QuotaGroup] | None = None,
    ) -> None:
        table = _checked_groups(keys, self._groups.values() if groups is None else groups)
        check_keys(keys.values(), table.values())  # before anything changes
        if persist:
            if self.key_store_path is None:
                raise ConfigError("persist=True needs a key_store_path")
            caps = self.limiter.tenants.caps()
            save_keys_file(self.key_store_path, list(keys.values()), list(table.values()), caps)
        with self._lock:
            self._keys = keys
            self._keys_version += 1
            self._groups = table
            self._max_tpm = _max_tpm_by_model(keys.values())
            self.limiter.set_keys(keys.values(), table.values())
        try:
            self.limiter.register_all()
        except StoreError as exc:
            logger.warning("keys not registered in the store yet: %s", exc)

    def set_keys(
        self,
        keys: Iterable[APIKey],
        *,
        quota_groups: Iterable[QuotaGroup] | None = None,
        persist: bool = False,
    ) -> None:
        """Replace every key (and, if given, every quota group) at once: one registration
        per pool, however many keys change.

        Raises:
            ConfigError: two keys share a ``key_id``, or a group is unknown, duplicate or
                spans models; nothing is changed then.
        """
        self._apply(_key_table(keys), persist, quota_groups)

    def add_key(self, key: APIKey, *, persist: bool = False) -> None:
        """Add ``key`` to the pool; with ``persist`` also to the keys file (atomically)."""
        if key.key_id in self._keys:
            raise ConfigError(f"key_id {key.key_id!r} already exists; remove it first")
        self._apply({**self._keys, key.key_id: key}, persist)

    def remove_key(self, key_id: str, *, persist: bool = False) -> None:
        """Remove ``key_id`` from the pool (its counters age out); ``persist`` edits the file."""
        self.get_key(key_id)
        self._apply({k: v for k, v in self._keys.items() if k != key_id}, persist)

    def reload_keys(self) -> None:
        """Re-read the keys file. On any error the current keys stay in force."""
        if self.key_store_path is None:
            raise ConfigError("reload_keys needs a key_store_path")
        doc = load_keys_document(self.key_store_path)
        try:  # the file's word again: limits learned from the provider are forgotten
            self.limiter.forget_learned()
        except StoreError as exc:
            logger.warning("learned limits not forgotten: %s", exc)
        self._apply({k.key_id: k for k in doc.keys}, False, doc.quota_groups)
        self.limiter.tenants.set_caps(doc.tenants)
        self.secret_store.invalidate()

    # -- status and health ------------------------------------------------------------

    def get_key_status(self, key_id: str) -> dict[str, Any]:
        """Usage, limits and health of ``key_id`` (the original design's fields and more;
        ``group``: its quota group's status)."""
        return self._statuses([self.get_key(key_id)])[0]

    def get_tenant_status(self, tenant: str, model: str | None = None) -> list[dict[str, Any]]:
        """A tenant's cap and usage in the current window, per pool (of ``model`` if
        given): ``model``, ``rpm_cap``/``tpm_cap`` (``None``: none), ``rpm_count``,
        ``tpm_used`` (counted only while the tenant has a cap in that pool)."""
        from rotating_llm.limiter._tenants import tenant_status

        return tenant_status(self.limiter, tenant, self.models() if model is None else [model])

    def get_all_key_statuses(self, model: str | None = None) -> list[dict[str, Any]]:
        """Status of every key (of ``model`` if given), one store call per pool; a key of
        a quota group carries the group's status as ``group``."""
        return self._statuses(
            [k for k in self._keys.values() if model is None or k.model_name == model]
        )

    def _statuses(self, keys: list[APIKey]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for pool in sorted({k.model_name for k in keys}):
            members = [k for k in keys if k.model_name == pool]
            gids = sorted({k.quota_group for k in members if k.quota_group in self._groups})
            names = [k.key_id for k in members] + [group_name(g) for g in gids]
            learned = self.limiter.learned(pool)
            if any(LEARNED_GROUP_KIND in learned.get(k.key_id, {}) for k in members):
                names.append(LEARNED_GROUP)
            usage = self.limiter.usage(pool, names)
            groups = {
                g: self._group_status(g, usage.get(group_name(g)), learned.get(group_name(g)))
                for g in gids
            }
            out += [
                key_status(
                    k,
                    usage.get(k.key_id),
                    groups.get(k.quota_group or ""),
                    learned.get(k.key_id),
                    learned_group(learned, k.key_id, usage),
                )
                for k in members
            ]
        return out

    def _group_status(
        self,
        group_id: str,
        usage: KeyUsage | None,
        learned: Mapping[str, LearnedRecord] | None = None,
    ) -> dict[str, Any]:
        members = [k for k in self._keys.values() if k.quota_group == group_id]
        model = members[0].model_name if members else None
        ids = [k.key_id for k in members]
        return group_status(self._groups[group_id], model, ids, usage, learned)

    def get_group_status(self, group_id: str) -> dict[str, Any]:
        """Usage and limits of quota group ``group_id``: all its keys together."""
        if group_id not in self._groups:
            raise ConfigError(f"unknown quota group {group_id!r}; groups: {sorted(self._groups)}")
        has_keys = any(k.quota_group == group_id for k in self._keys.values())
        if not has_keys:
            return self._group_status(group_id, None)
        learned = self.limiter.learned(self.limiter.group_pool(group_id))
        usage = self.limiter.group_usage(group_id)
        return self._group_status(group_id, usage, learned.get(group_name(group_id)))

    def get_all_group_statuses(self) -> list[dict[str, Any]]:
        """Status of every quota group."""
        return [self.get_group_status(g) for g in sorted(self._groups)]

    def mark_group_unhealthy(
        self,
        group_id: str,
        cooldown_seconds: float | None = None,
        reason: str = "quota group exhausted",
        *,
        until_daily_reset: bool = False,
    ) -> float:
        """Cool every key of ``group_id`` down at once (a per-project quota of the
        provider): for ``cooldown_seconds`` (default: the group's growing backoff), or
        until the next daily reset with ``until_daily_reset``."""
        if cooldown_seconds is not None and cooldown_seconds <= 0:
            raise ConfigError(f"cooldown_seconds must be > 0, got {cooldown_seconds}")
        if group_id not in self._groups:
            raise ConfigError(f"unknown quota group {group_id!r}; groups: {sorted(self._groups)}")
        seconds = self.limiter.cool_group(
            group_id, cooldown_seconds, reason, daily=until_daily_reset
        )
        model = self.limiter.group_pool(group_id)
        emit("group.cooldown", model=model, quota_group=group_id, seconds=seconds, reason=reason)
        return seconds

    def clear_group_cooldown(self, group_id: str) -> None:
        """End the cooldown of every key of ``group_id``."""
        self.limiter.group_health(group_id, "clear")

    def mark_key_unhealthy(
        self, key_id: str, cooldown_seconds: float | None = None, reason: str = "marked unhealthy"
    ) -> float:
        """Cool ``key_id`` down for ``cooldown_seconds`` (default: growing backoff)."""
        if cooldown_seconds is not None and cooldown_seconds <= 0:
            raise ConfigError(f"cooldown_seconds must be > 0, got {cooldown_seconds}")
        key = self.get_key(key_id)
        seconds = self.limiter.set_cooldown(key_id, cooldown_seconds, reason)
        emit("key.cooldown", model=key.model_name, key_id=key_id, seconds=seconds, reason=reason)
        return seconds

    def clear_cooldown(self, key_id: str) -> None:
        """End ``key_id``'s cooldown."""
        self.get_key(key_id)
        self.limiter.clear_cooldown(key_id)

    def disable_key(self, key_id: str, reason: str = "disabled by operator") -> None:
        """Take ``key_id`` out of rotation until :meth:`enable_key`."""
        key = self.get_key(key_id)
        self.limiter.health(key_id, "disable", reason=reason)
        emit("key.disabled", model=key.model_name, key_id=key_id, reason=reason)

    def enable_key(self, key_id: str) -> None:
        """Put a disabled ``key_id`` back into rotation."""
        self.get_key(key_id)
        self.limiter.health(key_id, "enable")

    def health_check(self) -> dict[str, Any]:
        """``{"healthy": ..., "mode": ..., "live_processes": ..., "problems": [...]}``.

        Runs each pool's status script (a dry-run decision that reserves nothing) and
        counts live processes from their heartbeats; never raises.
        """
        from rotating_llm.keys._health import health_report

        return health_report(self)

    def close(self) -> None:
        """Apply queued lease completions, then close store and secret store clients."""
        if self._prober is not None:
            self._prober.stop()
        if self._heartbeat is not None:
            self._heartbeat.stop()
        self.limiter.close()
        self.store.close()
        self.secret_store.close()

    async def aclose(self) -> None:
        """Close the running loop's async connections, then the rest."""
        await self.limiter.aclose()
        await self.store.primary.aclose()
        self.close()


def _start_heartbeat(manager: KeyManager) -> Heartbeat | None:
    """Start the heartbeat of a long-lived manager on a Redis (not on the embedded store)."""
    if manager.settings.heartbeat_seconds <= 0 or manager.store.primary.is_embedded:
        return None
    from rotating_llm.keys._heartbeat import Heartbeat

    beat = Heartbeat(manager, manager.settings.heartbeat_seconds)
    beat.start()
    return beat


def _start_prober(manager: KeyManager) -> Prober | None:
    """Start the key prober of a long-lived manager on a Redis (not on the embedded store)."""
    if manager.settings.probe_seconds <= 0 or manager.store.primary.is_embedded:
        return None
    from rotating_llm.keys._prober import Prober

    prober = Prober(manager, manager.settings.probe_seconds)
    prober.start()
    return prober


def _report_window_mismatch(keys: Iterable[APIKey], window: float) -> None:
    """Warn at start when a key points at a simulator of this process with another window.

    Costs nothing unless ``rotating_llm.testing`` is loaded: the simulator's limits are
    exact, so a library window longer than its window wastes capacity, and a shorter one
    trips its 429s.
    """
    sim = sys.modules.get("rotating_llm.testing._provider")
    if sim is None:
        return
    for key in keys:
        other = sim.simulator_window(key.base_url) if key.base_url else None
        if other is not None and abs(other - window) > 1e-9:
            logger.warning(
                "key %s points at a simulator whose window is %gs but this manager's is %gs "
                "(ROTATING_LLM_WINDOW_SECONDS / Settings.window_seconds): set both alike",
                key.key_id,
                other,
                window,
            )


def _key_table(keys: Iterable[APIKey]) -> dict[str, APIKey]:
    table: dict[str, APIKey] = {}
    for key in keys:
        if key.key_id in table:
            raise ConfigError(f"duplicate key_id {key.key_id!r}")
        table[key.key_id] = key
    return table


def _checked_groups(keys: dict[str, APIKey], groups: Iterable[QuotaGroup]) -> dict[str, QuotaGroup]:
    """``{group_id: group}``; ``ConfigError`` for a duplicate, unknown or multi-model group."""
    table, duplicate = group_table(list(groups))
    if duplicate is not None:
        raise ConfigError(f"duplicate quota group_id {duplicate!r}")
    listed = list(keys.values())
    problem = group_problem(listed, table)
    if problem is not None:
        raise ConfigError(f"key {listed[problem[0]].key_id!r}: {problem[1]}")
    return table


def _max_tpm_by_model(keys: Iterable[APIKey]) -> dict[str, int]:
    out: dict[str, int] = {}
    for key in keys:
        if key.active:
            out[key.model_name] = max(out.get(key.model_name, 0), key.tpm)
    return out
