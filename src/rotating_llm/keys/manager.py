"""``KeyManager``: the pool of keys, its leases, statuses and health (the original design's API)."""

from __future__ import annotations

import itertools
import logging
import sys
import threading
from collections.abc import Iterable
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
from rotating_llm.keys._leasing import Leasing
from rotating_llm.keys._status import key_status
from rotating_llm.keys.loader import load_keys_file, save_keys_file
from rotating_llm.keys.models import APIKey

if TYPE_CHECKING:
    from rotating_llm.keys._heartbeat import Heartbeat
    from rotating_llm.keys._prober import Prober
from rotating_llm.limiter import RedisLimiter
from rotating_llm.secrets import SecretStore, get_secret_store
from rotating_llm.storage import FailoverStore, open_store

__all__ = ["KeyManager", "default_secret_store", "get_key_manager", "get_redis_limiter"]

logger = logging.getLogger("rotating_llm.keys")


class KeyManager(Leasing):
    """A pool of API keys per model, sharing limits with every process on the same store.

    Args:
        keys: The keys; default: read ``key_store_path``.
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
        if keys is None:
            keys = load_keys_file(self.key_store_path) if self.key_store_path else []
        self._keys: dict[str, APIKey] = {}
        for key in keys:
            if key.key_id in self._keys:
                raise ConfigError(f"duplicate key_id {key.key_id!r}")
            self._keys[key.key_id] = key
        self._max_tpm = _max_tpm_by_model(self._keys.values())
        _report_window_mismatch(self._keys.values(), self.settings.window_seconds)
        self.secret_store = secret_store or get_secret_store(self.settings)
        self.store = FailoverStore(
            open_store(self.settings),
            self.settings.on_store_failure,
            self.settings.store_retry_interval,
        )
        self.limiter = RedisLimiter(self.store, self.settings)
        self.limiter.set_keys(self._keys.values())
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

    def get_key(self, key_id: str) -> APIKey:
        """The key ``key_id``."""
        try:
            return self._keys[key_id]
        except KeyError:
            raise KeyNotFoundError(key_id) from None

    def models(self) -> list[str]:
        """Models (pools) with at least one active key."""
        return sorted({k.model_name for k in self._keys.values() if k.active})

    def _apply(self, keys: dict[str, APIKey], persist: bool) -> None:
        if persist:
            if self.key_store_path is None:
                raise ConfigError("persist=True needs a key_store_path")
            save_keys_file(self.key_store_path, list(keys.values()))
        with self._lock:
            self._keys = keys
            self._max_tpm = _max_tpm_by_model(keys.values())
            self.limiter.set_keys(keys.values())
        try:
            self.limiter.register_all()
        except StoreError as exc:
            logger.warning("keys not registered in the store yet: %s", exc)

    def set_keys(self, keys: Iterable[APIKey], *, persist: bool = False) -> None:
        """Replace every key at once (one registration per pool, however many keys change).

        Raises:
            ConfigError: two keys share a ``key_id``; nothing is changed then.
        """
        table: dict[str, APIKey] = {}
        for key in keys:
            if key.key_id in table:
                raise ConfigError(f"duplicate key_id {key.key_id!r}")
            table[key.key_id] = key
        self._apply(table, persist)

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
        keys = load_keys_file(self.key_store_path)
        self._apply({k.key_id: k for k in keys}, persist=False)
        self.secret_store.invalidate()

    # -- status and health ------------------------------------------------------------

    def get_key_status(self, key_id: str) -> dict[str, Any]:
        """Usage, limits and health of ``key_id`` (the original design's fields and more)."""
        key = self.get_key(key_id)
        usage = self.limiter.usage(key.model_name, [key_id]).get(key_id)
        return key_status(key, usage)

    def get_all_key_statuses(self, model: str | None = None) -> list[dict[str, Any]]:
        """Status of every key (of ``model`` if given), one store call per pool."""
        keys = [k for k in self._keys.values() if model is None or k.model_name == model]
        out: list[dict[str, Any]] = []
        for pool in sorted({k.model_name for k in keys}):
            members = [k for k in keys if k.model_name == pool]
            usage = self.limiter.usage(pool, [k.key_id for k in members])
            out += [key_status(k, usage.get(k.key_id)) for k in members]
        return out

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


def _max_tpm_by_model(keys: Iterable[APIKey]) -> dict[str, int]:
    out: dict[str, int] = {}
    for key in keys:
        if key.active:
            out[key.model_name] = max(out.get(key.model_name, 0), key.tpm)
    return out
