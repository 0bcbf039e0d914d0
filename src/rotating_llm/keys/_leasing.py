"""Leasing: select-and-reserve with exact waiting, and what a provider's failure does to a key.

Mixed into :class:`~rotating_llm.keys.manager.KeyManager`; kept apart so each module
stays small. Uses the manager's ``settings``, ``store``, ``limiter``, ``secret_store``
and its key tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rotating_llm._bounds import check_priority, check_tenant
from rotating_llm.config import Settings, Strategy
from rotating_llm.errors import (
    AllKeysExhaustedError,
    ConfigError,
    RequestTooLargeError,
    SecretStoreError,
    StoreError,
    StoreUnavailableError,
)
from rotating_llm.events import emit
from rotating_llm.keys._failing import Failing
from rotating_llm.keys._flow import Flow, Step, adrive, drive
from rotating_llm.keys._status import exhausted_reasons, with_learned
from rotating_llm.keys.lease import Lease
from rotating_llm.limiter import RedisLimiter, Refusal, Reservation
from rotating_llm.limiter._queue import new_ticket
from rotating_llm.limiter._schema import TENANT_REASON
from rotating_llm.storage import call_deadline

if TYPE_CHECKING:
    from rotating_llm.keys.models import APIKey, QuotaGroup
    from rotating_llm.secrets import SecretStore
    from rotating_llm.storage import FailoverStore

__all__ = ["Leasing"]

logger = logging.getLogger("rotating_llm.keys")

#: A key whose secret cannot be read is skipped by this process for this long.
SECRET_RETRY_SECONDS = 30.0
_WAKE_SLACK = 0.001


class Leasing(Failing):
    """``acquire``/``aacquire`` and failure handling of a key manager."""

    settings: Settings
    store: FailoverStore
    limiter: RedisLimiter
    secret_store: SecretStore
    _keys: dict[str, APIKey]
    _groups: dict[str, QuotaGroup]
    _max_tpm: dict[str, int]
    _excluded: dict[str, float]
    _rr: itertools.count[int]
    _lock: threading.Lock

    def models(self) -> list[str]:  # pragma: no cover - provided by KeyManager
        raise NotImplementedError

    # -- leases -----------------------------------------------------------------------

    def _check_request(self, model: str, estimated_tokens: int) -> int:
        if not isinstance(model, str):
            raise ConfigError(f"model must be a string, got {type(model).__name__}")
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

    def _deadline(self, start: float, max_wait: float | None) -> float:
        """``start`` plus the wait allowed; ``max_wait`` must be a number >= 0 (inf: no bound)."""
        if max_wait is None:
            return start + self.settings.max_wait
        if isinstance(max_wait, bool) or not isinstance(max_wait, (int, float)):
            raise ConfigError(
                f"max_wait must be a number of seconds, got {type(max_wait).__name__}"
            )
        if math.isnan(max_wait) or max_wait < 0:
            raise ConfigError(f"max_wait must be >= 0 seconds, got {max_wait}")
        return start + max_wait

    def _store_deadline(self, max_wait: float | None) -> float:
        """When every store call of an acquire must have ended: ``max_wait`` plus one
        ``store_deadline`` from now."""
        return self._deadline(time.monotonic(), max_wait) + self.settings.store_deadline

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
        capped = refusal.reasons.get(TENANT_REASON)
        if capped is not None:  # the tenant's own cap refused: no key was looked at
            with contextlib.suppress(StoreError):
                self.limiter.count_refusal(model)
            emit("lease.refused", model=model, reason="tenant", retry_after=refusal.retry_after)
            return AllKeysExhaustedError(model, refusal.retry_after, {TENANT_REASON: capped})
        keys = [k for k in self._keys.values() if k.active and k.model_name == model]
        names = [k.key_id for k in keys]
        names += sorted({f"@{k.quota_group}" for k in keys if k.quota_group in self._groups})
        groups = self._groups
        try:
            self.limiter.count_refusal(model)
            usage = self.limiter.usage(model, names)
            learned = self.limiter.learned(model)
        except StoreError:
            usage, learned = {}, {}
        if learned:  # the limits in force, for the reasons
            keys = [with_learned(k, learned.get(k.key_id)) for k in keys]
            groups = {g: with_learned(q, learned.get(f"@{g}")) for g, q in groups.items()}
        reasons = exhausted_reasons(keys, usage, refusal.reasons, exclude, groups)
        emit("lease.refused", model=model, reason="exhausted", retry_after=refusal.retry_after)
        return AllKeysExhaustedError(
            model,
            refusal.retry_after,
            reasons,
            queue_position=refusal.position,
            expected_wait=refusal.expected_wait,
        )

    def _granted(self, model: str, res: Reservation, secret: Any, est: int, start: float) -> Lease:
        waited = time.monotonic() - start
        key = self._keys[res.key_id]
        extra: dict[str, Any] = {"quota_group": key.quota_group} if key.quota_group else {}
        if res.affinity_held is not None:
            extra["affinity_held"] = res.affinity_held
        emit(
            "lease.acquired",
            model=model,
            key_id=res.key_id,
            estimated_tokens=est,
            waited=waited,
            tier=key.tier,
            **extra,
        )
        return Lease(self, key, secret, res, est, waited)

    def _acquire_flow(
        self,
        model: str,
        estimated_tokens: int,
        max_wait: float | None,
        strategy: Strategy | None,
        exclude: Sequence[str],
        affinity: str | None = None,
        priority: int = 0,
        tenant: str | None = None,
    ) -> Flow[Lease]:
        """Every rule of ``acquire``, without I/O: yields what to do, gets its result."""
        est = self._check_request(model, estimated_tokens)
        priority = check_priority(priority, ConfigError)
        tenant = check_tenant(tenant, ConfigError)
        start = time.monotonic()
        deadline = self._deadline(start, max_wait)
        secret_errors: list[SecretStoreError] = []
        # a caller that may wait holds a ticket in the pool's queue (taken by the call
        # that refuses it); its turn is signalled, or it looks again before it expires
        ticket = new_ticket() if deadline > start else ""
        ticket_s = self.settings.queue_ticket_seconds
        queued = waited = False
        try:  # once queued, any error (the store's, the subscriber's) leaves the queue
            while True:
                excl = self._exclusions(exclude)
                life = min(ticket_s, deadline - time.monotonic()) if ticket else 0.0
                held = ticket if life > 0 else ""
                reserve = ("reserve", model, est, strategy, excl, None, affinity, priority, tenant)
                leave = Step("leave", model, ticket) if queued else None
                try:
                    out = yield Step(*reserve, held, life, undo=leave)
                except StoreUnavailableError:
                    if queued:
                        queued = False
                        yield Step("leave", model, ticket)
                    if self.store.mode == "allow":
                        lease: Lease = yield Step("fail_open", model, est, excl)
                        return lease
                    raise
                if isinstance(out, Reservation):
                    if queued:  # (the grant took the ticket out of the queue)
                        queued = False
                        yield Step("forget", ticket)
                    try:  # a caller that gives up meanwhile leaves no grant behind
                        release = Step("settle", out, "release", 0)
                        secret = yield Step("secret", out.key_id, undo=release)
                    except SecretStoreError as exc:
                        secret_errors.append(exc)
                        yield Step("settle", out, "release", 0)
                        self._exclude_for_secret(out.key_id, exc)
                        continue
                    return self._granted(model, out, secret, est, start)
                now = time.monotonic()
                behind = out.position is not None and out.position > 0
                if (
                    out.retry_after is None
                    or now + out.retry_after > deadline
                    or (behind and now >= deadline)
                ):
                    if queued or (held and out.position is not None):
                        queued = False
                        yield Step("leave", model, ticket)
                    if secret_errors:
                        raise _unreadable(secret_errors)
                    raise (yield Step("exhausted", model, out, exclude))
                if held and out.position is not None and not queued:
                    queued = True
                    yield Step("listen", model, ticket, behind, undo=Step("leave", model, ticket))
                # the head waits until capacity returns (Redis's clock), the others until
                # signalled; each looks again before its ticket expires
                wait = out.retry_after + _WAKE_SLACK if not behind else deadline - now
                if queued:
                    wait = min(wait, ticket_s / 3)
                if not waited:  # (once per acquire: a waiter looks again many times)
                    waited = True
                    emit(
                        "lease.waiting", model=model, seconds=out.retry_after, position=out.position
                    )
                leave = Step("leave", model, ticket) if queued else None
                yield Step("wait", ticket if queued else "", wait, undo=leave)
        except Exception:
            if queued:  # (best effort: a ticket not renewed expires anyway)
                yield Step("leave", model, ticket)
            raise

    def acquire(
        self,
        model: str,
        estimated_tokens: int = 1,
        max_wait: float | None = None,
        *,
        strategy: Strategy | None = None,
        exclude: Sequence[str] = (),
        affinity: str | None = None,
        priority: int = 0,
        tenant: str | None = None,
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
            StoreTimeoutError: Redis is slow (not lost) and did not answer within
                ``max_wait`` plus ``settings.store_deadline``.

        ``affinity`` (a conversation's id, say): the key that last served it is chosen
        while it has room, else the strategy decides and the affinity moves to the key
        granted; ``Lease.affinity_held`` tells which.

        ``priority`` (an int from -1000 to 1000, higher first) and ``tenant`` (whose
        request it is) say how this request ranks among the pool's waiters.
        """
        flow = self._acquire_flow(
            model, estimated_tokens, max_wait, strategy, exclude, affinity, priority, tenant
        )
        with call_deadline(self._store_deadline(max_wait)):
            return drive(flow, self._sync_io)

    async def aacquire(
        self,
        model: str,
        estimated_tokens: int = 1,
        max_wait: float | None = None,
        *,
        strategy: Strategy | None = None,
        exclude: Sequence[str] = (),
        affinity: str | None = None,
        priority: int = 0,
        tenant: str | None = None,
    ) -> Lease:
        """Async twin of :meth:`acquire` (the same rules, driven on the event loop)."""
        flow = self._acquire_flow(
            model, estimated_tokens, max_wait, strategy, exclude, affinity, priority, tenant
        )
        with call_deadline(self._store_deadline(max_wait)):
            return await adrive(flow, self._async_io, self.limiter.in_background)

    # -- the I/O of the flows: one table per shell ------------------------------------

    def _sync_io(self, step: Step) -> Any:
        op, args = step.op, step.args
        if op == "reserve":
            return self.limiter.reserve(*args)
        if op == "secret":
            return self.secret_store.get_secret(*args)
        if op == "fresh_secret":
            self.secret_store.invalidate(args[0])
            return self.secret_store.get_secret(*args)
        if op == "settle":
            return self.limiter.settle(*args)
        if op == "health":
            return self.limiter.health(*args)
        if op == "learn":
            return self.learn(*args)
        if op == "wait":
            if not args[0]:
                return time.sleep(args[1])
            return self.limiter.waiters.wait(*args)
        if op == "listen":
            return self.limiter.listen(*args)
        if op == "leave":
            return self.limiter.leave(*args)
        if op == "forget":
            return self.limiter.waiters.forget(*args)
        if op == "sleep":
            return time.sleep(*args)
        if op == "exhausted":
            return self._exhausted(*args)
        if op == "fail_open":
            return self._fail_open(*args)
        raise AssertionError(f"unknown step {op!r}")  # pragma: no cover

    async def _async_io(self, step: Step) -> Any:
        op, args = step.op, step.args
        if op == "reserve":
            return await self.limiter.areserve(*args)
        if op == "secret":
            return await self.secret_store.aget_secret(*args)
        if op == "fresh_secret":
            self.secret_store.invalidate(args[0])
            return await self.secret_store.aget_secret(*args)
        if op == "settle":
            return await self.limiter.asettle(*args)
        if op == "health":
            return await self.limiter.ahealth(*args)
        if op == "learn":
            return await self.alearn(*args)
        if op == "wait":
            if not args[0]:
                return await asyncio.sleep(args[1])
            return await self.limiter.waiters.await_signal(*args)
        if op == "listen":
            return await self.limiter.alisten(*args)
        if op == "leave":
            return await self.limiter.aleave(*args)
        if op == "forget":
            return self.limiter.waiters.forget(*args)
        if op == "sleep":
            return await asyncio.sleep(*args)
        # rare paths that read every key's status or pick a key by hand: off the loop
        return await asyncio.to_thread(self._sync_io, step)


def _unreadable(errors: list[SecretStoreError]) -> SecretStoreError:
    """One error naming every key whose secret could not be read (not only the last)."""
    if len(errors) == 1:
        return errors[0]
    seen = list(dict.fromkeys(str(e) for e in errors))
    return SecretStoreError(
        f"Cannot retrieve the secrets of {len(seen)} keys: " + "; ".join(seen),
        key_id=errors[-1].key_id,
        store=errors[-1].store,
    )
