"""``KeyManager``: the pool of keys, its leases, statuses and health (the seed's API)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rotating_llm.config import Settings, Strategy
from rotating_llm.errors import (
    AllKeysExhaustedError,
    ConfigError,
    KeyNotFoundError,
    RequestTooLargeError,
    SecretStoreError,
    StoreError,
    StoreUnavailableError,
)
from rotating_llm.events import emit
from rotating_llm.keys._status import exhausted_reasons, key_status
from rotating_llm.keys.lease import FailureKind, Lease
from rotating_llm.keys.loader import load_keys_file, save_keys_file
from rotating_llm.keys.models import APIKey
from rotating_llm.limiter import RedisLimiter, Refusal, Reservation
from rotating_llm.secrets import SecretStore, get_secret_store
from rotating_llm.storage import FailoverStore, open_store

__all__ = ["KeyManager", "default_secret_store", "get_key_manager", "get_redis_limiter"]

logger = logging.getLogger("rotating_llm.keys")

#: A key whose secret cannot be read is skipped by this process for this long.
SECRET_RETRY_SECONDS = 30.0
_WAKE_SLACK = 0.001


class KeyManager:
    """A pool of API keys per model, sharing limits with every process on the same store.

    Args:
        keys: The keys; default: read ``key_store_path``.
        key_store_path: A keys file in the design document's format.
        settings: Default: :meth:`Settings.from_env`.
        secret_store: Default: the store ``settings.secret_store_type`` names.
    """

    def __init__(
        self,
        keys: Iterable[APIKey] | None = None,
        *,
        key_store_path: str | Path | None = None,
        settings: Settings | None = None,
        secret_store: SecretStore | None = None,
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

    # -- leases -----------------------------------------------------------------------

    def _check_request(self, model: str, estimated_tokens: int) -> int:
        if isinstance(estimated_tokens, bool) or not isinstance(estimated_tokens, int):
            raise ConfigError(
                f"estimated_tokens must be an int, got {type(estimated_tokens).__name__}"
            )
        if estimated_tokens < 0:
            raise ConfigError(f"estimated_tokens must be >= 0, got {estimated_tokens}")
        max_tpm = self._max_tpm.get(model)
        if max_tpm is None:
            raise ConfigError(f"no active keys for model {model!r}; models: {self.models()}")
        if estimated_tokens > max_tpm:
            emit("lease.refused", model=model, reason="too_large", retry_after=None)
            raise RequestTooLargeError(model, estimated_tokens, max_tpm)
        return max(estimated_tokens, 1)

    def _exclusions(self, extra: Sequence[str]) -> Sequence[str]:
        if not self._excluded:
            return extra
        now = time.monotonic()
        with self._lock:
            for kid in [k for k, until in self._excluded.items() if until <= now]:
                del self._excluded[kid]
            return sorted(set(self._excluded) | set(extra))

    def _exclude_for_secret(self, key_id: str, exc: SecretStoreError) -> None:
        logger.warning("key %s skipped for %ss: %s", key_id, SECRET_RETRY_SECONDS, exc)
        with self._lock:
            self._excluded[key_id] = time.monotonic() + SECRET_RETRY_SECONDS

    def _fail_open(self, model: str, est: int, exclude: Sequence[str]) -> Lease:
        pool = [
            k
            for k in self._keys.values()
            if k.active and k.model_name == model and k.key_id not in exclude
        ] or [k for k in self._keys.values() if k.active and k.model_name == model]
        key = pool[next(self._rr) % len(pool)]
        logger.warning(
            "store unavailable: lease on %s without a reservation (allow mode)", key.key_id
        )
        return Lease(self, key, self.secret_store.get_secret(key.key_id), None, est)

    def _exhausted(
        self, model: str, refusal: Refusal, exclude: Sequence[str]
    ) -> AllKeysExhaustedError:
        try:
            usage = self.limiter.usage(model)
        except StoreError:
            usage = {}
        keys = [k for k in self._keys.values() if k.active and k.model_name == model]
        reasons = exhausted_reasons(keys, usage, refusal.reasons, exclude)
        emit("lease.refused", model=model, reason="exhausted", retry_after=refusal.retry_after)
        return AllKeysExhaustedError(model, refusal.retry_after, reasons)

    def _granted(self, model: str, res: Reservation, secret: Any, est: int, start: float) -> Lease:
        waited = time.monotonic() - start
        emit("lease.acquired", model=model, key_id=res.key_id, estimated_tokens=est, waited=waited)
        return Lease(self, self._keys[res.key_id], secret, res, est, waited)

    def acquire(
        self,
        model: str,
        estimated_tokens: int = 1,
        max_wait: float | None = None,
        *,
        strategy: Strategy | None = None,
        exclude: Sequence[str] = (),
    ) -> Lease:
        """Reserve one request of ``estimated_tokens`` on a key of ``model``'s pool.

        Waits exactly until capacity returns (Redis's clock) when that is within
        ``max_wait`` seconds (default ``settings.max_wait``; 0 fails at once).

        Raises:
            AllKeysExhaustedError: no key has room within ``max_wait``.
            RequestTooLargeError: ``estimated_tokens`` exceeds every key's TPM.
            ConfigError: ``model`` has no active keys.
            SecretStoreError: the only keys with room have no readable secret.
            StoreUnavailableError: Redis is lost and the failure mode is ``deny``.
        """
        est = self._check_request(model, estimated_tokens)
        start = time.monotonic()
        deadline = start + (self.settings.max_wait if max_wait is None else max_wait)
        secret_error: SecretStoreError | None = None
        while True:
            excl = self._exclusions(exclude)
            try:
                out = self.limiter.reserve(model, est, strategy, excl)
            except StoreUnavailableError:
                if self.store.mode == "allow":
                    return self._fail_open(model, est, excl)
                raise
            if isinstance(out, Reservation):
                try:
                    secret = self.secret_store.get_secret(out.key_id)
                except SecretStoreError as exc:
                    secret_error = exc
                    self.limiter.settle(out, "release", 0)
                    self._exclude_for_secret(out.key_id, exc)
                    continue
                return self._granted(model, out, secret, est, start)
            if out.retry_after is None or time.monotonic() + out.retry_after > deadline:
                if secret_error is not None:
                    raise secret_error
                raise self._exhausted(model, out, exclude)
            emit("lease.waiting", model=model, seconds=out.retry_after)
            time.sleep(out.retry_after + _WAKE_SLACK)

    async def aacquire(
        self,
        model: str,
        estimated_tokens: int = 1,
        max_wait: float | None = None,
        *,
        strategy: Strategy | None = None,
        exclude: Sequence[str] = (),
    ) -> Lease:
        """Async twin of :meth:`acquire`."""
        est = self._check_request(model, estimated_tokens)
        start = time.monotonic()
        deadline = start + (self.settings.max_wait if max_wait is None else max_wait)
        secret_error: SecretStoreError | None = None
        while True:
            excl = self._exclusions(exclude)
            try:
                out = await self.limiter.areserve(model, est, strategy, excl)
            except StoreUnavailableError:
                if self.store.mode == "allow":
                    return await asyncio.to_thread(self._fail_open, model, est, excl)
                raise
            if isinstance(out, Reservation):
                try:
                    secret = await self.secret_store.aget_secret(out.key_id)
                except SecretStoreError as exc:
                    secret_error = exc
                    await self.limiter.asettle(out, "release", 0)
                    self._exclude_for_secret(out.key_id, exc)
                    continue
                return self._granted(model, out, secret, est, start)
            if out.retry_after is None or time.monotonic() + out.retry_after > deadline:
                if secret_error is not None:
                    raise secret_error
                raise await asyncio.to_thread(self._exhausted, model, out, exclude)
            emit("lease.waiting", model=model, seconds=out.retry_after)
            await asyncio.sleep(out.retry_after + _WAKE_SLACK)

    # -- failures ---------------------------------------------------------------------

    def _secret_rotated(self, lease: Lease) -> bool | None:
        """Re-read the secret once after an auth error: True if it changed, None if unreadable."""
        self.secret_store.invalidate(lease.key_id)
        try:
            fresh = self.secret_store.get_secret(lease.key_id)
        except SecretStoreError:
            return None
        return fresh.get_secret_value() != lease.api_key

    def _on_failure(
        self,
        lease: Lease,
        kind: FailureKind,
        retry_after: float | None,
        reason: str | None,
        actual: int | None,
    ) -> str:
        res, kid = lease.reservation, lease.key_id
        tokens = lease.estimated_tokens if actual is None else actual
        try:
            if kind is FailureKind.AUTH:
                if res is not None:
                    self.limiter.settle(res, "release", 0)
                if self._secret_rotated(lease):
                    return "secret_rotated"
                why = reason or "authentication failed"
                self.limiter.health(kid, "disable", reason=why)
                emit("key.disabled", model=lease.model_name, key_id=kid, reason=why)
                return "disabled"
            if res is not None:
                spent = (
                    (actual or 0)
                    if kind in (FailureKind.RATE_LIMIT, FailureKind.DAILY_QUOTA)
                    else tokens
                )
                self.limiter.settle(res, "complete", spent)
            if kind is FailureKind.RATE_LIMIT:
                why = reason or "rate limited (429)"
                secs = self.limiter.set_cooldown(kid, retry_after, why)
                emit("key.cooldown", model=lease.model_name, key_id=kid, seconds=secs, reason=why)
                return "cooldown"
            if kind is FailureKind.DAILY_QUOTA:
                why = reason or "daily quota exhausted"
                secs = self.limiter.health(kid, "daily", reason=why)
                emit("key.cooldown", model=lease.model_name, key_id=kid, seconds=secs, reason=why)
                return "cooldown"
        except StoreError as exc:
            logger.warning("could not record %s on %s: %s", kind.value, kid, exc)
        return "none"

    async def _aon_failure(
        self,
        lease: Lease,
        kind: FailureKind,
        retry_after: float | None,
        reason: str | None,
        actual: int | None,
    ) -> str:
        return await asyncio.to_thread(self._on_failure, lease, kind, retry_after, reason, actual)

    # -- status and health ------------------------------------------------------------

    def get_key_status(self, key_id: str) -> dict[str, Any]:
        """Usage, limits and health of ``key_id`` (the seed's fields and more)."""
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
        self.get_key(key_id)
        return self.limiter.set_cooldown(key_id, cooldown_seconds, reason)

    def clear_cooldown(self, key_id: str) -> None:
        """End ``key_id``'s cooldown."""
        self.get_key(key_id)
        self.limiter.clear_cooldown(key_id)

    def disable_key(self, key_id: str, reason: str = "disabled by operator") -> None:
        """Take ``key_id`` out of rotation until :meth:`enable_key`."""
        self.get_key(key_id)
        self.limiter.health(key_id, "disable", reason=reason)

    def enable_key(self, key_id: str) -> None:
        """Put a disabled ``key_id`` back into rotation."""
        self.get_key(key_id)
        self.limiter.health(key_id, "enable")

    def health_check(self) -> dict[str, Any]:
        """``{"healthy": ..., ...}``: the store answers and at least one key is active."""
        report: dict[str, Any] = {
            "store": self.store.primary.kind,
            "store_url": self.store.primary.description,
            "on_store_failure": self.store.mode,
            "keys_loaded": len(self._keys),
            "active_keys": sum(1 for k in self._keys.values() if k.active),
            "models": self.models(),
        }
        try:
            self.store.primary.sync.ping()
            report["store_ok"] = True
        except Exception as exc:  # any driver error: report, never raise
            report["store_ok"] = False
            report["error"] = f"{type(exc).__name__}: {exc}"
        report["healthy"] = bool(report["store_ok"] and report["active_keys"])
        return report

    def close(self) -> None:
        """Close store connections and secret store clients."""
        self.store.close()
        self.secret_store.close()

    async def aclose(self) -> None:
        """Close the running loop's async connections, then the rest."""
        await self.store.primary.aclose()
        self.close()


def _max_tpm_by_model(keys: Iterable[APIKey]) -> dict[str, int]:
    out: dict[str, int] = {}
    for key in keys:
        if key.active:
            out[key.model_name] = max(out.get(key.model_name, 0), key.tpm)
    return out


_default: KeyManager | None = None
_default_lock = threading.Lock()


def get_key_manager(key_store_path: str | Path | None = None, **kwargs: Any) -> KeyManager:
    """The process's default manager; with arguments, a new one that becomes the default.

    Without arguments and no default yet, reads ``KEY_STORE_PATH`` (default ``./keys.json``)
    if that file exists.
    """
    global _default
    with _default_lock:
        if key_store_path is not None or kwargs or _default is None:
            if key_store_path is None and "keys" not in kwargs:
                settings = kwargs.get("settings") or Settings.from_env()
                kwargs["settings"] = settings
                if settings.key_store_path.exists():
                    key_store_path = settings.key_store_path
            _default = KeyManager(key_store_path=key_store_path, **kwargs)
        return _default


def get_redis_limiter() -> RedisLimiter:
    """The default manager's limiter (the seed's ``get_redis_limiter``)."""
    return get_key_manager().limiter


def default_secret_store() -> SecretStore:
    """The default manager's secret store, or a new one from the environment."""
    return _default.secret_store if _default is not None else get_secret_store(Settings.from_env())


def _reset_default() -> None:
    """Forget the default manager (tests)."""
    global _default
    with _default_lock:
        _default = None
