"""The limiter: one script call per decision, per settlement, per health change."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from rotating_llm._bounds import DELAY_MARGIN_S, check_delay, check_priority, check_tenant
from rotating_llm.config import Settings, Strategy
from rotating_llm.errors import ConfigError, KeyNotFoundError, StoreTimeoutError
from rotating_llm.limiter import _schema as schema
from rotating_llm.limiter._affinity import affinity_digest
from rotating_llm.limiter._asettler import AsyncSettler
from rotating_llm.limiter._days import DayBoundaries
from rotating_llm.limiter._group_ops import GroupOps, group_name
from rotating_llm.limiter._journal import Journal
from rotating_llm.limiter._key_check import check_keys
from rotating_llm.limiter._learn_ops import LearnOps
from rotating_llm.limiter._queue import QueueOps, Waiters, check_ticket, tenant_digest
from rotating_llm.limiter._request_id import check_request_id, new_request_id
from rotating_llm.limiter._restore import Restore
from rotating_llm.limiter._settler import Settler
from rotating_llm.limiter._tenants import TenantCaps
from rotating_llm.storage import FailoverStore, Store, call_deadline, translate_errors
from rotating_llm.storage._direct import LostError
from rotating_llm.storage._timing import deadline_of

if TYPE_CHECKING:
    from rotating_llm.keys.models import APIKey, QuotaGroup

__all__ = ["KeyUsage", "RedisLimiter", "Refusal", "Reservation"]

logger = logging.getLogger("rotating_llm.limiter")

_US = 1_000_000
_CANDIDATES = 2
#: How long the release of an abandoned grant may wait for Redis: as long as the script
#: keeps the grant of a request id (REQ_TTL_MS), after which nothing is left to release.
_RELEASE_BUDGET_S = 30.0
# positions in the schema's grant and refusal replies (parsed on every decision)
_GRANT_SPLIT = len(schema.GRANT) - 1  # the key id is last and may hold no space
_G_RES, _G_DAY, _G_NOW, _G_AFF, _G_TEN, _G_KEY = (
    schema.GRANT.index(f)
    for f in ("reservation_id", "day", "now_us", "affinity", "tenant", "key_id")
)
_HELD = {"-": None, "1": True, "0": False}
_R_CODE, _R_RETRY, _R_POS, _R_WAIT = (
    schema.REFUSAL.index(f) for f in ("code", "retry_after_us", "position", "wait_us")
)


class Reservation(NamedTuple):
    """One admitted request: which key, which reservation, on which store.

    A named tuple: made on every decision, so it must be cheap to build.
    """

    pool: str
    key_id: str
    reservation_id: str
    day: int
    estimated_tokens: int
    store: Store
    #: When the script granted it, in microseconds on Redis's clock.
    granted_at_us: int = 0
    #: Whether the key that last served the acquire's affinity was chosen (``None``: no
    #: affinity was asked).
    affinity_held: bool | None = None
    #: The digest of the capped tenant it counts for (``""``: none).
    tenant: str = ""


@dataclass(frozen=True)
class Refusal:
    """No key had room: when capacity returns (seconds, ``None`` = never) and why."""

    retry_after: float | None
    reasons: dict[str, str]
    #: Waiters ahead of the caller in the pool's queue (``None``: not queued).
    position: int | None = None
    #: The expected wait in the queue, in seconds (``None``: unknown).
    expected_wait: float | None = None


@dataclass(frozen=True)
class KeyUsage:
    """Usage and health of one key, as the store sees it now."""

    key_id: str
    in_pool: bool
    rpm_count: int
    tpm_used: int
    rpd_count: int
    cooldown_remaining: float
    cooldown_reason: str | None
    disabled_reason: str | None
    next_capacity_in: float | None
    #: Tokens reserved since the last daily reset (corrected by settlements).
    tpd_used: int = 0


def _ticket_ms(ticket: str, seconds: float) -> int:
    """A ticket's life for the script: milliseconds, at most the ticket setting's bound."""
    check_ticket(ticket)
    if not ticket or not seconds > 0:
        return 0
    return max(1, min(int(seconds * 1000), schema.QUEUE_TICKET_MAX_MS))


def _untaken(args: list[Any]) -> list[Any]:
    """An acquire's arguments to resend for a release: it takes no ticket (a grant it
    made is returned, or made and released; the caller no longer waits)."""
    return [*args[:-1], 0]  # (the schema's ticket_ms is last)


#: The longest window and cooldown settings the scripts are given (seconds).
_MAX_SETTING_S = 7 * 86400


def _check_settings(settings: Settings) -> None:
    """The settings that reach the scripts are finite and at most a week."""
    names = ("window_seconds", "cooldown_base_seconds", "cooldown_max_seconds")
    for name in (*names, "affinity_ttl_seconds"):
        value = getattr(settings, name)
        if not (isinstance(value, (int, float)) and 0 < value <= _MAX_SETTING_S):
            raise ConfigError(
                f"{name} must be more than 0 and at most {_MAX_SETTING_S}, got {value}"
            )


class RedisLimiter(GroupOps, LearnOps, QueueOps, Restore):
    """Atomic select-and-reserve over a pool's keys, and everything that settles it.

    The original design's ``get_redis_limiter()`` returns the default manager's limiter; its
    ``get_rpm_usage``, ``get_tpm_usage`` and ``clear_cooldown`` take a ``key_id``.
    """

    def __init__(self, store: FailoverStore, settings: Settings) -> None:
        _check_settings(settings)
        self.store = store
        self.settings = settings
        self.window_us = int(settings.window_seconds * _US)
        self.days = DayBoundaries(settings.rpd_timezone)
        self._keys: dict[str, APIKey] = {}
        self._groups: dict[str, QuotaGroup] = {}
        self._pools: dict[str, list[APIKey]] = {}
        self._affinity_ttl_ms = max(1, int(settings.affinity_ttl_seconds * 1000))
        self.waiters = Waiters()
        #: Per-tenant caps (the keys file's ``tenants`` and the settings).
        self.tenants = TenantCaps(settings)
        self._registered: dict[int, tuple[int, set[str]]] = {}
        self._lock = threading.Lock()
        self._settler = Settler()
        self._asettler = AsyncSettler()
        #: releases of grants whose caller was cancelled (kept so they are not collected)
        self._abandoned: set[asyncio.Future[Any]] = set()
        self.journal = Journal(self.window_us)
        #: acquires that may have run on a Redis lost meanwhile: released when it is back
        self.pending_releases: deque[tuple[str, int, Store, list[Any]]] = deque(maxlen=1000)
        self.peers: dict[str, tuple[int, int]] = {}
        self._epochs: dict[str, str] = {}
        self._seen: dict[str, tuple[int, dict[str, tuple[int, int, int, int]]]] = {}

    def __repr__(self) -> str:
        return f"RedisLimiter({self.store!r}, pools={sorted(self._pools)})"

    # -- membership -------------------------------------------------------------------

    def set_keys(self, keys: Iterable[APIKey], groups: Iterable[QuotaGroup] = ()) -> None:
        """Replace the known keys and quota groups (checked by the caller: every group a
        key names is known, and holds keys of one pool); pools are registered lazily on
        each store used."""
        keys, groups = list(keys), list(groups)
        check_keys(keys, groups)
        table = {g.group_id: g for g in groups}
        by_pool: dict[str, list[APIKey]] = {}
        known: dict[str, APIKey] = {}
        for key in keys:
            known[key.key_id] = key
            if key.active:
                by_pool.setdefault(key.model_name, []).append(key)
        with self._lock:
            gone = set(self._pools) - set(by_pool)
            self._keys = known
            self._groups = table
            self._pools = {p: by_pool.get(p, []) for p in set(by_pool) | gone}
            self._registered.clear()
        self.tenants.keys_changed()

    def keys_of(self, pool: str) -> list[APIKey]:
        """The active keys of ``pool`` (none: an unknown pool)."""
        return list(self._pools.get(pool, ()))

    def pool_of(self, key_id: str) -> str:
        """The pool (model name) of ``key_id``."""
        key = self._keys.get(key_id)
        if key is None:
            raise KeyNotFoundError(key_id)
        return key.model_name

    def _head(self, store: Store, pool: str) -> list[Any]:
        return [self.window_us, *self.days.args()]  # the schema's HEAD

    def _register_args(self, store: Store, pool: str) -> list[Any]:
        keys = self._pools.get(pool, [])
        tail: list[Any] = self._group_register_args(keys)
        for key in keys:
            tail += [key.key_id, self._limits_arg(key)]
        return [*self._head(store, pool), "replace", *self._share_tail(store, pool, tail)]

    def _needs_register(self, store: Store, pool: str) -> bool:
        self._expire_due()
        gen = self.store.generation
        entry = self._registered.get(id(store))
        if entry is not None and entry[0] == gen and pool in entry[1]:
            return False  # the hot path: no lock
        with self._lock:
            entry = self._registered.get(id(store))
            if entry is None or entry[0] != gen:
                entry = (gen, set())
                self._registered[id(store)] = entry
            return pool not in entry[1]

    def _mark_registered(self, store: Store, pool: str, done: bool = True) -> None:
        with self._lock:
            entry = self._registered.setdefault(id(store), (self.store.generation, set()))
            (entry[1].add if done else entry[1].discard)(pool)

    def _ensure(self, store: Store, pool: str) -> None:
        if self._needs_register(store, pool):
            raw = store.call("register", store.pool_keys(pool), self._register_args(store, pool))
            self._register_reply(raw)
            self._restore(store, pool)
            self._mark_registered(store, pool)

    async def _aensure(self, store: Store, pool: str) -> None:
        if self._needs_register(store, pool):
            args = self._register_args(store, pool)
            self._register_reply(await store.acall("register", store.pool_keys(pool), args))
            await self._arestore(store, pool)
            self._mark_registered(store, pool)

    def register_all(self) -> None:
        """Register every pool now (after keys were added, removed or reloaded)."""
        for pool in list(self._pools):

            def op(store: Store, pool: str = pool) -> None:
                self._ensure(store, pool)

            self.store.run("register", op)

    # -- decisions --------------------------------------------------------------------

    def _acquire_args(
        self,
        store: Store,
        pool: str,
        est: int,
        strategy: Strategy,
        exclude: Sequence[str],
        request_id: str,
        affinity: str = "",
        queue: tuple[int, str, str, int] = (0, "-", "", 0),
        tenant_cap: str = "",
    ) -> list[Any]:
        rnd = 0.0
        if strategy == "weighted":
            import random  # only the weighted strategy draws

            rnd = random.random()
        head = self._head(store, pool)
        return [
            *(*head, est, strategy, rnd, _CANDIDATES, ",".join(exclude), request_id),
            *(affinity, self._affinity_ttl_ms),
            tenant_cap,
            *queue,  # (ticket_ms last: see _untaken)
        ]

    def _parse(self, store: Store, pool: str, est: int, raw: Any) -> Reservation | Refusal | None:
        if isinstance(raw, str):  # granted: the schema's GRANT fields
            f = raw.split(" ", _GRANT_SPLIT)
            res = Reservation(
                pool,
                f[_G_KEY],
                f[_G_RES],
                int(f[_G_DAY]),
                est,
                store,
                int(f[_G_NOW]),
                _HELD[f[_G_AFF]],
                "" if f[_G_TEN] == "-" else f[_G_TEN],
            )
            key = self._keys.get(res.key_id)
            group = key.quota_group if key is not None and key.quota_group else None
            primary = store is self.store.primary
            epoch = self._epochs.get(pool, "")
            self.journal.granted(res, group and group_name(group), primary, epoch)
            return res
        code = int(raw[_R_CODE])
        if code == -1:  # the store lost the pool's config (flushed or restarted)
            self._mark_registered(store, pool, done=False)
            return None
        retry_us, pos, wait_us = int(raw[_R_RETRY]), int(raw[_R_POS]), int(raw[_R_WAIT])
        n = len(schema.REFUSAL)
        reasons = {str(raw[i]): str(raw[i + 1]) for i in range(n, len(raw) - 1, 2)}
        return Refusal(
            None if retry_us < 0 else retry_us / _US,
            reasons,
            None if pos < 0 else pos,
            None if wait_us < 0 else wait_us / _US,
        )

    def reserve(
        self,
        pool: str,
        estimated_tokens: int,
        strategy: Strategy | None = None,
        exclude: Sequence[str] = (),
        request_id: str | None = None,
        affinity: str | None = None,
        priority: int = 0,
        tenant: str | None = None,
        ticket: str = "",
        ticket_seconds: float = 0.0,
    ) -> Reservation | Refusal:
        """One select-and-reserve call for ``pool`` (registering the pool first if needed).

        ``request_id`` names this attempt (default: a new id). Every resend of the call
        (after a timeout) carries it, so the store returns the first grant, not a second.
        ``affinity`` (a conversation's id): the key that last served it is chosen while it
        has room (and no key of a lower tier has); the grant says whether it was.
        ``priority`` and ``tenant`` (checked by the caller) rank the request among the
        pool's waiters: while anyone waits, only the best ticket, or a caller it does not
        outrank, is granted. ``ticket`` (from ``new_ticket``; '' none) is the caller's
        place in the queue, taken or renewed for ``ticket_seconds`` (0: it will not
        wait) by a refusal.
        A ``tenant`` with a cap (:attr:`tenants`) is refused while its own window is
        full (taking no ticket), and counted in it when granted.
        """
        strat = strategy or self.settings.strategy
        priority = check_priority(priority, ConfigError)  # (a public entry point too)
        tenant = check_tenant(tenant, ConfigError)
        rid = new_request_id() if request_id is None else check_request_id(request_id)
        aff = affinity_digest(affinity)
        queue = (priority, tenant_digest(tenant), ticket, _ticket_ms(ticket, ticket_seconds))
        cap = self.tenants.args(pool, tenant, self._pools.get(pool, ()))

        def op(store: Store) -> Reservation | Refusal:
            tcap = self._tenant_cap(store, pool, cap, queue[1])
            if tcap is None:
                return self._no_share(pool, cap, queue[1])
            for _ in range(2):
                self._ensure(store, pool)
                args = self._acquire_args(
                    store, pool, estimated_tokens, strat, exclude, rid, aff, queue, tcap
                )
                try:
                    raw = store.call("acquire", store.pool_keys(pool), args)
                except (StoreTimeoutError, KeyboardInterrupt):  # it may be granted: release it
                    self._abandon(pool, estimated_tokens, store, _untaken(args))
                    raise
                except LostError:  # it may have run: released once Redis is back
                    self.pending_releases.append((pool, estimated_tokens, store, _untaken(args)))
                    raise
                out = self._parse(store, pool, estimated_tokens, raw)
                if out is not None:
                    return out
            return Refusal(None, {})

        out = self.store.run("acquire", op)
        if isinstance(out, Refusal) and self._settler.pending:
            # this process's own completions may free room: apply them, then look again
            self._settler.flush(until=self._call_end())
            out = self.store.run("acquire", op)
        if ticket and isinstance(out, Reservation):
            self._wake_local(pool, out.store)
        return out

    def _no_share(self, pool: str, cap: str, digest: str) -> Refusal:
        """The refusal of a capped tenant (of ``cap``) this process has no share of while
        Redis is lost, naming that limit: until the next look at Redis."""
        why = f"tenant {self._unshared(pool, cap, digest)}"
        return Refusal(self.settings.store_retry_interval, {schema.TENANT_REASON: why})

    def _call_end(self) -> float:
        """When the store calls of the running acquire must end (see ``call_deadline``)."""
        return deadline_of(self.store.primary.timing)

    async def areserve(
        self,
        pool: str,
        estimated_tokens: int,
        strategy: Strategy | None = None,
        exclude: Sequence[str] = (),
        request_id: str | None = None,
        affinity: str | None = None,
        priority: int = 0,
        tenant: str | None = None,
        ticket: str = "",
        ticket_seconds: float = 0.0,
    ) -> Reservation | Refusal:
        """Async twin of :meth:`reserve`."""
        strat = strategy or self.settings.strategy
        priority = check_priority(priority, ConfigError)  # (a public entry point too)
        tenant = check_tenant(tenant, ConfigError)
        rid = new_request_id() if request_id is None else check_request_id(request_id)
        aff = affinity_digest(affinity)
        queue = (priority, tenant_digest(tenant), ticket, _ticket_ms(ticket, ticket_seconds))
        cap = self.tenants.args(pool, tenant, self._pools.get(pool, ()))

        sent: list[tuple[Store, list[Any]]] = []

        async def op(store: Store) -> Reservation | Refusal:
            tcap = self._tenant_cap(store, pool, cap, queue[1])
            if tcap is None:
                return self._no_share(pool, cap, queue[1])
            for _ in range(2):
                await self._aensure(store, pool)
                args = self._acquire_args(
                    store, pool, estimated_tokens, strat, exclude, rid, aff, queue, tcap
                )
                sent.append((store, _untaken(args)))
                try:
                    raw = await store.acall("acquire", store.pool_keys(pool), args)
                except StoreTimeoutError:  # it may still be granted: release it then
                    self._aabandon(pool, estimated_tokens, store, _untaken(args))
                    raise
                except LostError:  # it may have run: released once Redis is back
                    self.pending_releases.append((pool, estimated_tokens, store, _untaken(args)))
                    raise
                out = self._parse(store, pool, estimated_tokens, raw)
                if out is not None:
                    return out
            return Refusal(None, {})

        try:
            out = await self.store.arun("acquire", op)
        except asyncio.CancelledError:
            if sent:  # the script may have granted it: take the grant back and release it
                self._aabandon(pool, estimated_tokens, *sent[-1])
            raise
        if isinstance(out, Refusal) and (self._asettler.pending or self._settler.pending):
            # this process's own completions may free room: apply them, then look again
            until = self._call_end()
            with contextlib.suppress(asyncio.TimeoutError):  # (its reader is shielded)
                await asyncio.wait_for(self._asettler.flush(), max(0.0, until - time.monotonic()))
            if self._settler.pending:
                await asyncio.to_thread(self._settler.flush, until)
            out = await self.store.arun("acquire", op)
        if ticket and isinstance(out, Reservation):
            self._wake_local(pool, out.store)
        return out

    def in_background(self, work: Awaitable[Any]) -> None:
        """Run ``work`` (a release for a caller that gave up) on the running loop without
        waiting for it; :meth:`aflush` waits for it."""
        task = asyncio.ensure_future(work)
        self._abandoned.add(task)
        task.add_done_callback(self._abandoned.discard)

    def _aabandon(self, pool: str, est: int, store: Store, args: list[Any]) -> None:
        """Release, in the background, what an acquire given up on may be granted."""
        self.in_background(self._release_abandoned(pool, est, store, args))

    def _abandon(self, pool: str, est: int, store: Store, args: list[Any]) -> None:
        """Sync twin of :meth:`_aabandon`: on a daemon thread of its own."""

        def release() -> None:
            try:
                with call_deadline(time.monotonic() + _RELEASE_BUDGET_S):
                    raw = store.call("acquire", store.pool_keys(pool), args)
                    out = self._parse(store, pool, est, raw)
                    if isinstance(out, Reservation):
                        self.settle(out, "release", 0)
            except LostError:  # Redis lost meanwhile: released once it is back
                self.pending_releases.append((pool, est, store, args))
            except Exception as exc:  # the reservation then expires with its window
                logger.warning("could not release an abandoned reservation: %s", exc)

        self.store.in_background(release, "rotating-llm-release")  # closing waits for it

    async def _release_abandoned(self, pool: str, est: int, store: Store, args: list[Any]) -> None:
        """Release what an acquire whose caller was cancelled was granted: the same call
        resent (same request id) returns that grant, or makes one, and either is released."""
        try:
            with call_deadline(time.monotonic() + _RELEASE_BUDGET_S):
                raw = await store.acall("acquire", store.pool_keys(pool), args)
                out = self._parse(store, pool, est, raw)
                if isinstance(out, Reservation):
                    await self.asettle(out, "release", 0)
        except LostError:  # Redis lost meanwhile: released once it is back
            self.pending_releases.append((pool, est, store, args))
        except Exception as exc:  # the reservation then expires with its window
            logger.warning("could not release an abandoned reservation: %s", exc)

    # -- settlement -------------------------------------------------------------------

    def _settle_args(
        self, res: Reservation, action: str, value: int, outcome: str = ""
    ) -> list[Any]:
        return [
            *self._head(res.store, res.pool),
            res.key_id,
            res.reservation_id,
            res.estimated_tokens,
            action,
            value,
            res.day,
            *self._settle_tail(res.key_id),
            schema.RATES[outcome] if outcome else "",
            res.tenant,
            res.granted_at_us,
        ]

    def complete_later(self, res: Reservation, tokens: int) -> bool:
        """Write the completion of ``res`` without waiting for Redis's reply.

        Only on a Redis server; returns False (nothing done) on a cluster or the embedded
        store, where the caller settles as usual. Reads of usage, refusals and
        :meth:`close` wait for the outstanding replies.
        """
        if res.store.kind != "redis":
            return False
        self._settler.submit(res, self._settle_args(res, "complete", tokens, "served"))
        self.journal.settled(res, "complete", tokens, res.store is self.store.primary)
        return True

    async def acomplete_later(self, res: Reservation, tokens: int) -> bool:
        """Async twin of :meth:`complete_later`: written on this loop's own connection."""
        if res.store.kind != "redis":
            return False
        await self._asettler.submit(res, self._settle_args(res, "complete", tokens, "served"))
        self.journal.settled(res, "complete", tokens, res.store is self.store.primary)
        return True

    @property
    def pending_completions(self) -> int:
        """Completions of this process not yet applied to the store."""
        return self._settler.pending + self._asettler.pending

    async def aflush(self) -> None:
        """Wait until the completions written from this loop (and any thread) are applied,
        and the reservations of cancelled acquires are released."""
        if self._abandoned:
            await asyncio.gather(*self._abandoned)
        await self._asettler.flush()
        if self._settler.pending:
            await asyncio.to_thread(self._settler.flush)

    async def aclose(self) -> None:
        """Apply this loop's outstanding completions and close the connection that carried
        them, and stop the queue's subscriber (off the loop)."""
        await self._asettler.aclose()
        await asyncio.to_thread(self.waiters.close)

    def flush(self) -> None:
        """Wait until this process's outstanding completions are applied."""
        self._settler.flush()

    def close(self) -> None:
        """Apply outstanding completions and close the connection that carried them; stop
        the queue's subscriber thread (joined, bounded) and start none after."""
        self._settler.close()
        self.waiters.close()

    def settle(self, res: Reservation, action: str, value: int, outcome: str = "") -> int:
        """``complete`` (value = actual tokens) or ``release`` (value ignored) a reservation.

        Runs on the store the reservation was made on. Returns the token delta applied.
        ``outcome`` (a name of ``schema.RATES``: ``served``, ``rate_limited``) is counted
        in the pool's per-minute rates when the settlement applies.
        """
        args = self._settle_args(res, action, value, outcome)
        with translate_errors(f"settle ({action})", res.store.description):
            raw = res.store.call("settle", res.store.pool_keys(res.pool), args)
        self.journal.settled(res, action, value, res.store is self.store.primary)
        self._wake_local(res.pool, res.store)
        return int(raw)

    async def asettle(self, res: Reservation, action: str, value: int, outcome: str = "") -> int:
        """Async twin of :meth:`settle`."""
        args = self._settle_args(res, action, value, outcome)
        with translate_errors(f"settle ({action})", res.store.description):
            raw = await res.store.acall("settle", res.store.pool_keys(res.pool), args)
        self.journal.settled(res, action, value, res.store is self.store.primary)
        self._wake_local(res.pool, res.store)
        return int(raw)

    def count_refusal(self, pool: str) -> None:
        """Count a refusal the caller saw (``AllKeysExhaustedError``) in ``pool``'s rates."""

        def op(store: Store) -> None:
            args = [*self._head(store, pool), schema.RATES["refused"], ""]
            store.call("count", store.pool_keys(pool), args)

        self.store.run("count refusal", op)

    # -- health -----------------------------------------------------------------------

    def _health_args(
        self, store: Store, pool: str, key_id: str, action: str, seconds: float, reason: str
    ) -> list[Any]:
        return [
            *self._head(store, pool),
            key_id,
            action,
            seconds,
            reason,
            self.settings.cooldown_base_seconds,
            self.settings.cooldown_max_seconds,
        ]

    def _cap(self, seconds: float) -> float:
        """A cooldown of ``seconds`` (0: growing backoff), at most until the next daily
        reset plus a margin; a delay that is not a finite positive number is absent."""
        delay = check_delay(seconds, "cooldown seconds", ConfigError)
        if delay is None:
            return 0.0
        return min(delay, self.days.next_reset() - time.time() + DELAY_MARGIN_S)

    def health(self, key_id: str, action: str, seconds: float = 0.0, reason: str = "") -> float:
        """Apply a health action to ``key_id``; returns the cooldown set, in seconds."""
        pool = self.pool_of(key_id)
        seconds = self._cap(seconds)

        def op(store: Store) -> tuple[float, Store]:
            self._ensure(store, pool)
            args = self._health_args(store, pool, key_id, action, seconds, reason)
            return int(store.call("health", store.pool_keys(pool), args)) / 1000, store

        out, store = self.store.run(f"key health ({action})", op)
        self.journal.health(key_id, action, out, reason)
        self._wake_local(pool, store)
        return out

    async def ahealth(
        self, key_id: str, action: str, seconds: float = 0.0, reason: str = ""
    ) -> float:
        """Async twin of :meth:`health`."""
        pool = self.pool_of(key_id)
        seconds = self._cap(seconds)

        async def op(store: Store) -> tuple[float, Store]:
            await self._aensure(store, pool)
            args = self._health_args(store, pool, key_id, action, seconds, reason)
            raw = await store.acall("health", store.pool_keys(pool), args)
            return int(raw) / 1000, store

        out, store = await self.store.arun(f"key health ({action})", op)
        self.journal.health(key_id, action, out, reason)
        self._wake_local(pool, store)
        return out

    def set_cooldown(self, key_id: str, seconds: float | None, reason: str) -> float:
        """Cool ``key_id`` down for ``seconds`` (``None``: growing backoff)."""
        return self.health(key_id, "cooldown", seconds or 0.0, reason)

    def clear_cooldown(self, key_id: str) -> None:
        """End ``key_id``'s cooldown and reset its backoff (the original design's name)."""
        self.health(key_id, "clear")

    # -- reading ----------------------------------------------------------------------

    def usage(self, pool: str, key_ids: Sequence[str] = ()) -> dict[str, KeyUsage]:
        """Usage of ``key_ids`` (default: every key of ``pool``), one script call."""
        if self._settler.pending:
            self._settler.flush(until=self._call_end())

        def op(store: Store) -> list[Any]:
            self._ensure(store, pool)
            args = [*self._head(store, pool), *key_ids]
            return list(store.call("status", store.pool_keys(pool), args))

        raw = self.store.run("status", op)
        out: dict[str, KeyUsage] = {}
        width = len(schema.STATUS)
        for i in range(0, len(raw), width):
            f = dict(zip(schema.STATUS, raw[i : i + width], strict=True))
            kid = str(f["key_id"])
            nxt = int(f["next_fit_us"])
            out[kid] = KeyUsage(
                key_id=kid,
                in_pool=bool(int(f["in_pool"])),
                rpm_count=int(f["rpm_count"]),
                tpm_used=int(f["tpm_used"]),
                rpd_count=int(f["rpd_count"]),
                cooldown_remaining=int(f["cooldown_ms"]) / 1000,
                cooldown_reason=str(f["cooldown_reason"]) or None,
                disabled_reason=str(f["disabled_reason"]) or None,
                next_capacity_in=None if nxt < 0 else nxt / _US,
                tpd_used=int(f["tpd_used"]),
            )
        return out

    def _one(self, key_id: str) -> tuple[APIKey, KeyUsage]:
        """``key_id``'s key and its usage now (``KeyNotFoundError`` if unknown)."""
        pool = self.pool_of(key_id)
        return self._keys[key_id], self.usage(pool, [key_id])[key_id]

    def get_rpm_usage(self, key_id: str) -> dict[str, Any]:
        """Requests of ``key_id`` in the current sliding window: ``{"count", "limit", ...}``."""
        key, used = self._one(key_id)
        return {"key_id": key_id, "count": used.rpm_count, "limit": key.rpm,
                "window_seconds": self.settings.window_seconds}  # fmt: skip

    def get_tpm_usage(self, key_id: str) -> dict[str, Any]:
        """Tokens of ``key_id`` in the current sliding window: ``{"used", "limit", ...}``."""
        key, used = self._one(key_id)
        return {"key_id": key_id, "used": used.tpm_used, "limit": key.tpm,
                "window_seconds": self.settings.window_seconds}  # fmt: skip

    def get_rpd_usage(self, key_id: str) -> dict[str, Any]:
        """Requests of ``key_id`` since the last daily reset: ``{"count", "limit", ...}``."""
        key, used = self._one(key_id)
        return {"key_id": key_id, "count": used.rpd_count, "limit": key.rpd,
                "timezone": self.settings.rpd_timezone}  # fmt: skip

    def get_tpd_usage(self, key_id: str) -> dict[str, Any]:
        """Tokens of ``key_id`` since the last daily reset: ``{"used", "limit", ...}``."""
        key, used = self._one(key_id)
        return {"key_id": key_id, "used": used.tpd_used, "limit": key.tpd,
                "timezone": self.settings.rpd_timezone}  # fmt: skip
