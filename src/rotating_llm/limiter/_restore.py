"""Putting back what a store lost, and the degraded share while Redis is lost.

Mixed into :class:`~rotating_llm.limiter.RedisLimiter`. After every registration of a
pool on a store (the first one, after a failover either way, after Redis was flushed or
restarted empty) this process replays into that store what the :class:`Journal` knows
(its grants of this window, the cooldowns and disables it set), in one ``replay`` call
and one ``health`` call per key health. Into Redis that is a write-back; into the
in-process store a seed of the degraded share. Each beat of the heartbeat reports the
live processes (the share's divisor) and the pool's epoch: an epoch that changed means
Redis lost the pool's state, and the pool is registered and replayed again.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeGuard

from rotating_llm.limiter._degraded import (
    degraded_tail,
    peer_rank,
    share,
    tenant_share,
    unshared,
)
from rotating_llm.limiter._group_ops import group_name
from rotating_llm.limiter._journal import Journal
from rotating_llm.limiter._schema import DAY_SEED, STATUS, TENANT_MARK
from rotating_llm.storage._errors import translate_errors

if TYPE_CHECKING:
    from rotating_llm.config import Settings
    from rotating_llm.keys.models import APIKey, QuotaGroup
    from rotating_llm.limiter._limiter import Refusal, Reservation
    from rotating_llm.limiter._tenants import TenantCaps
    from rotating_llm.storage import FailoverStore, Store

__all__ = ["Restore"]

logger = logging.getLogger("rotating_llm.limiter")


def _is_grant(out: object) -> TypeGuard[Reservation]:
    from rotating_llm.limiter._limiter import Reservation  # (it imports this module)

    return isinstance(out, Reservation)


class Restore:
    """The limiter's write-back and degraded-share part."""

    store: FailoverStore
    settings: Settings
    journal: Journal
    tenants: TenantCaps
    _pools: dict[str, list[APIKey]]
    _groups: dict[str, QuotaGroup]
    #: pool -> (live processes, this one's rank) from the last heartbeat
    peers: dict[str, tuple[int, int]]
    #: pool -> the epoch of its state on Redis, as last registered
    _epochs: dict[str, str]
    #: pool -> (when, key or group name -> (reservations, tokens, requests today, tokens
    #: today)) Redis held at the last heartbeat
    _seen: dict[str, tuple[int, dict[str, tuple[int, int, int, int]]]]

    pending_releases: deque[tuple[str, int, Store, list[Any]]]

    # provided by RedisLimiter
    def _parse(
        self, store: Store, pool: str, est: int, raw: Any
    ) -> Reservation | Refusal | None:  # pragma: no cover
        raise NotImplementedError

    def settle(
        self, res: Reservation, action: str, value: int, outcome: str = ""
    ) -> int:  # pragma: no cover
        raise NotImplementedError

    async def asettle(
        self, res: Reservation, action: str, value: int, outcome: str = ""
    ) -> int:  # pragma: no cover
        raise NotImplementedError

    def _head(self, store: Store, pool: str) -> list[Any]:  # pragma: no cover
        raise NotImplementedError

    def _health_args(
        self, store: Store, pool: str, key_id: str, action: str, seconds: float, reason: str
    ) -> list[Any]:  # pragma: no cover
        raise NotImplementedError

    def _ensure(self, store: Store, pool: str) -> None:  # pragma: no cover
        raise NotImplementedError

    def _mark_registered(
        self, store: Store, pool: str, done: bool = True
    ) -> None:  # pragma: no cover
        raise NotImplementedError

    def _hold_seconds(self) -> float:
        """How long at most the first process back on an emptied Redis holds every key
        (the hold ends as soon as every process it saw replayed): two intervals in which
        the others notice (heartbeat, probe of a lost Redis), and a slow probe's time."""
        s = self.settings
        return 2 * max(s.heartbeat_seconds, s.store_retry_interval) + s.store_lost_after

    def _degraded(self, store: Store) -> bool:
        """True for the in-process store that stands in for a lost Redis."""
        primary = self.store.primary
        return store is not primary and store.is_embedded and not primary.is_embedded

    def _share_tail(self, store: Store, pool: str, tail: list[Any]) -> list[Any]:
        """A register tail, cut to this process's share on the degraded store."""
        if not self._degraded(store):
            return tail
        n, rank = self.peers.get(pool, (1, 0))
        return degraded_tail(tail, n, rank)

    def _tenant_cap(self, store: Store, pool: str, cap: str, digest: str) -> str | None:
        """The acquire's tenant cap on ``store``: on the degraded store this process's
        share of it (``None``: none, the tenant is refused here until Redis is back)."""
        if not cap or not self._degraded(store):
            return cap
        n, rank = self.peers.get(pool, (1, 0))
        return tenant_share(cap, TENANT_MARK + digest, n, rank)

    def _unshared(self, pool: str, cap: str, digest: str) -> str:
        """Which limit of a tenant's cap this process has no share of ("rpm", "tpm")."""
        n, rank = self.peers.get(pool, (1, 0))
        return unshared(cap, TENANT_MARK + digest, n, rank)

    def _replay_args(self, store: Store, pool: str) -> list[Any]:
        """The ``replay`` call's arguments: what this process granted in the window; into
        the degraded store also its share of what the pool held at the last heartbeat."""
        primary = not self._degraded(store)
        if primary:
            tail = self.journal.replay_tail(pool, written_back=True)
        else:
            tail = self._seed_tail(pool)
        hold, n = 0, self.peers.get(pool, (1, 0))[0]
        if primary and pool in self._epochs and n > 1:
            hold = int(self._hold_seconds() * 1000)  # others must replay theirs first
        head = [*self._head(store, pool), secrets.token_hex(8), hold, n, self.journal.tag]
        return [*head, *tail]

    def _seed_tail(self, pool: str) -> list[Any]:
        """Seed of the degraded store: this process's share of every key's and group's
        reservations on Redis at the last heartbeat (apportioned as the limits are, so
        the seeds of all processes add up to what Redis held; dated at that beat, so they
        count a full window from then) and of their use earlier that day (so daily
        limits hold too), and its own grants on Redis made since."""
        seen = self._seen.get(pool)
        if seen is None:
            return self.journal.replay_tail(pool, written_back=False)
        at_us, usage = seen
        n, rank = self.peers.get(pool, (1, 0))
        tail: list[Any] = []
        for kid, (count, tokens, today, tokens_today) in usage.items():
            mine, tok = share(count, kid, n, rank), share(tokens, kid, n, rank)
            for j in range(mine):
                each = tok // mine + (1 if j < tok % mine else 0)
                tail += [kid, f"seen{at_us}.{j}", at_us, each, ""]
            if kid.startswith(TENANT_MARK):
                continue  # (a tenant's caps are per window: no day to seed)
            day_n = max(0, share(today, kid, n, rank) - mine)
            day_t = max(0, share(tokens_today, kid, n, rank) - tok)
            if day_n or day_t:  # the day's use before the window (schema.DAY_SEED)
                tail += [kid, f"{DAY_SEED}{day_n}", at_us, day_t, ""]
        return tail + self.journal.replay_tail(pool, written_back=False, since_us=at_us)

    def snapshot(self, pool: str) -> None:
        """Read what Redis holds of ``pool`` now (the heartbeat does, every beat): of
        every key and quota group, its window's reservations and its use today; of every
        capped tenant this process has asked for in it, its window's."""
        keys = self._pools.get(pool, [])
        names = [k.key_id for k in keys]
        names += sorted({group_name(k.quota_group) for k in keys if k.quota_group})
        if names:
            names += self.tenants.capped(pool)
        if not names:
            return
        primary = self.store.primary
        now_us = int(time.time() * 1_000_000)
        args = [*self._head(primary, pool), *names]
        raw = list(primary.call("status", primary.pool_keys(pool), args))
        w = len(STATUS)
        at = [STATUS.index(f) for f in ("rpm_count", "tpm_used", "rpd_count", "tpd_used")]
        usage = {
            str(raw[i]): (int(raw[i + at[0]]), int(raw[i + at[1]]), int(raw[i + at[2]]),
                          int(raw[i + at[3]]))
            for i in range(0, len(raw), w)
            if int(raw[i + STATUS.index("in_pool")]) or str(raw[i]).startswith(TENANT_MARK)
        }  # fmt: skip
        self._seen[pool] = (now_us, usage)

    def _health_calls(self, store: Store, pool: str, reply: Any) -> list[list[Any]]:
        """After ``replay`` answered ``reply``: the ``health`` calls that put back the
        cooldowns and disables this process set, if the store's state is new (an emptied
        Redis, the in-process store); never over a state that kept its own."""
        added, epoch, fresh = int(reply[0]), str(reply[1]), int(reply[2])
        degraded = self._degraded(store)
        if not degraded:
            self._epochs[pool] = epoch
        if added:
            where = "the in-process store" if degraded else store.description
            logger.warning("replayed %d reservations of pool %s into %s", added, pool, where)
        if not (fresh or degraded):
            return []
        keys = self._pools.get(pool, [])
        names = {k.key_id for k in keys} | {
            group_name(k.quota_group) for k in keys if k.quota_group
        }
        return [
            self._health_args(store, pool, kid, action, seconds, reason)
            for kid, action, seconds, reason in self.journal.health_now(names)
        ]

    def _pending(self, store: Store, pool: str) -> list[tuple[int, list[Any]]]:
        """Take the acquires of ``pool`` sent to ``store`` before it was lost."""
        out: list[tuple[str, int, Store, list[Any]]] = []
        keep: list[tuple[str, int, Store, list[Any]]] = []
        while self.pending_releases:
            item = self.pending_releases.popleft()
            (out if item[0] == pool and item[2] is store else keep).append(item)
        self.pending_releases.extend(keep)
        return [(est, args) for _, est, _, args in out]

    def _restore(self, store: Store, pool: str) -> None:
        """Replay into ``store`` what this process knows (after registering ``pool``),
        and release what acquires sent before it was lost were granted."""
        kp = store.pool_keys(pool)
        reply = store.call("replay", kp, self._replay_args(store, pool))
        for args in self._health_calls(store, pool, reply):
            store.call("health", kp, args)
        for est, args in self._pending(store, pool):  # the same request id: its grant
            out = self._parse(store, pool, est, store.call("acquire", kp, args))
            if _is_grant(out):
                self.settle(out, "release", 0)

    async def _arestore(self, store: Store, pool: str) -> None:
        """Async twin of :meth:`_restore`."""
        kp = store.pool_keys(pool)
        reply = await store.acall("replay", kp, self._replay_args(store, pool))
        for args in self._health_calls(store, pool, reply):
            await store.acall("health", kp, args)
        for est, args in self._pending(store, pool):
            out = self._parse(store, pool, est, await store.acall("acquire", kp, args))
            if _is_grant(out):
                await self.asettle(out, "release", 0)

    def _recover(self, pool: str) -> None:
        """Try the lost primary now (not at this process's next call) and, if it is back,
        register and replay ``pool`` there: the write-back of what was granted in process."""
        primary = self.store.primary

        def op(store: Store) -> None:
            if store is primary:
                self._mark_registered(store, pool, done=False)
            self._ensure(store, pool)

        self.store.run("recover", op)

    def beat_seen(self, pool: str, members: Iterable[str], mine: str, epoch: str | None) -> None:
        """What a heartbeat read: the live processes of ``pool`` and its epoch on Redis.

        A changed epoch (or none) after this process registered the pool means Redis
        lost its state: register and replay now, not at this process's next acquire.
        """
        known = self._epochs.get(pool)
        if known is None or epoch == known:
            self.peers[pool] = peer_rank(members, mine)
            if self.store.primary_down:  # Redis answers the beat: come back, write back
                self._recover(pool)
            return
        # (the members were lost with the state: the peers seen before still count)
        logger.warning("pool %s lost its state on Redis (flushed or restarted): replaying", pool)
        primary = self.store.primary  # it just answered the beat, lost or not
        self._mark_registered(primary, pool, done=False)
        with translate_errors("replay", primary.description):
            self._ensure(primary, pool)
