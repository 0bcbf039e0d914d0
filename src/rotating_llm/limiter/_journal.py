"""What this process granted in the current window, and the key health it set.

Kept so that state Redis lost can be put back (``replay.lua``):

- after Redis restarted empty or was flushed, each process replays its own grants of
  the current window, and the cooldowns and disables it set, so the window stays exact
  and a disabled key stays out of rotation;
- after a failover, what was granted on the in-process store is written back to Redis
  under members of this process's own (``d<tag>.<reservation id>``);
- when failing over, this process's grants on Redis seed its in-process store, so its
  degraded share (``_degraded``) counts what it already took in the window.

Members are named as the scripts name them (``<reservation id>`` in a key's window,
``<reservation id>@<key id>`` in its group's and in its capped tenant's), so a replay
adds only what is missing, and a flush never gives a tenant its cap a second time.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import TYPE_CHECKING, NamedTuple

from rotating_llm.limiter._schema import TENANT_MARK

if TYPE_CHECKING:
    from rotating_llm.limiter._limiter import Reservation

__all__ = ["Journal"]

_US = 1_000_000


class _Grant(NamedTuple):
    key_id: str
    group: str | None
    member: str
    at_us: int
    tokens: int
    primary: bool
    #: the pool's epoch on Redis when granted there ('' for the in-process store)
    epoch: str
    #: the capped tenant's digest it counts for ('' none)
    tenant: str = ""


class Journal:
    """Grants of this process per pool (this window only) and the key health it set."""

    def __init__(self, window_us: int) -> None:
        self.window_us = window_us
        self.tag = secrets.token_hex(4)  # names this process's written-back members
        self._grants: dict[str, dict[tuple[str, str, bool], _Grant]] = {}
        #: key id -> (action, until as time.time(), reason)
        self._health: dict[str, tuple[str, float, str]] = {}
        self._lock = threading.Lock()

    def granted(self, res: Reservation, group: str | None, primary: bool, epoch: str) -> None:
        """Note a grant (``primary``: made on Redis, under ``epoch``; else on the
        in-process store)."""
        at = res.granted_at_us or int(time.time() * _US)
        est, ep = res.estimated_tokens, epoch if primary else ""
        g = _Grant(res.key_id, group, res.reservation_id, at, est, primary, ep, res.tenant)
        with self._lock:
            book = self._grants.setdefault(res.pool, {})
            book[(res.key_id, res.reservation_id, primary)] = g
            self._trim(book, at)

    def settled(self, res: Reservation, action: str, tokens: int, primary: bool) -> None:
        """Note a settlement: a release drops the grant, a completion re-dates it now."""
        ident = (res.key_id, res.reservation_id, primary)
        with self._lock:
            book = self._grants.get(res.pool)
            old = book.pop(ident, None) if book is not None else None
            if old is not None and action == "complete" and book is not None:
                now = int(time.time() * _US)
                book[ident] = old._replace(at_us=now, tokens=tokens)  # last: newest

    def _trim(self, book: dict[tuple[str, str, bool], _Grant], now_us: int) -> None:
        cutoff = now_us - self.window_us
        while book:
            first = next(iter(book))
            if book[first].at_us > cutoff:
                return
            del book[first]

    def health(self, key_id: str, action: str, seconds: float, reason: str) -> None:
        """Note a health change this process made (``seconds``: the cooldown set)."""
        with self._lock:
            if action in ("clear", "enable"):
                self._health.pop(key_id, None)
            elif action == "disable":
                self._health[key_id] = ("disable", float("inf"), reason)
            elif seconds > 0:  # a cooldown (of a key, or of a group's keys)
                self._health[key_id] = ("cooldown", time.time() + seconds, reason)

    def replay_tail(self, pool: str, written_back: bool, since_us: int = 0) -> list[str]:
        """The ``replay`` script's tail for ``pool``: every grant of this window (made
        after ``since_us``) for a store that lost it; ``written_back``: into Redis
        (grants made on the in-process store get this process's member names), else
        into the in-process store (only the grants made on Redis)."""
        cutoff = max(int(time.time() * _US) - self.window_us, since_us)
        with self._lock:
            grants = [g for g in self._grants.get(pool, {}).values() if g.at_us > cutoff]
        tail: list[str] = []
        for g in grants:
            if not g.primary and not written_back:
                continue
            rid = g.member if g.primary else f"d{self.tag}.{g.member}"
            ep = g.epoch if written_back else ""  # (the in-process store has no epochs)
            tail += [g.key_id, rid, str(g.at_us), str(g.tokens), ep]
            if g.group:
                tail += [g.group, f"{rid}@{g.key_id}", str(g.at_us), str(g.tokens), ep]
            if g.tenant:  # (the tenant's window names it as the group's does)
                tid = TENANT_MARK + g.tenant
                tail += [tid, f"{rid}@{g.key_id}", str(g.at_us), str(g.tokens), ep]
        return tail

    def health_now(self, key_ids: set[str]) -> list[tuple[str, str, float, str]]:
        """``(key id, action, seconds left, reason)`` of the health this process set that
        still holds, for ``key_ids``."""
        now = time.time()
        with self._lock:
            items = [(k, v) for k, v in self._health.items() if k in key_ids]
        out = []
        for kid, (action, until, reason) in items:
            if until > now:
                out.append((kid, action, 0.0 if until == float("inf") else until - now, reason))
        return out
