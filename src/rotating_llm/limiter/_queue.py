"""The waiters' side of the pool's queue: tickets, and waking a waiter when its turn comes.

The queue itself lives in Redis (acquire.lua takes a ticket in the call that refuses a
caller who may wait; the layout is in :mod:`rotating_llm.limiter._schema`). A script
that may have made a ticket's turn come (a grant to the head, a purge, a release, a key
back) publishes the ticket on the pool's channel; one subscriber thread per process and
store hands it to the local waiter holding it (a ``threading.Event``, or an
``asyncio.Event`` set on its loop); on a Redis Cluster a script's PUBLISH reaches every
node, so the subscriber listens on any one. The embedded store (one process) wakes the
pool's waiters in-process instead. Every waiter also looks again before its ticket
expires, so a lost signal costs at most that.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import secrets
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rotating_llm.storage import Store

__all__ = ["QueueOps", "Waiters", "check_ticket", "new_ticket", "tenant_digest"]

logger = logging.getLogger("rotating_llm.limiter")

#: A subscriber with no waiter for this long stops (started again on demand).
_IDLE_S = 10.0
#: Signals for tickets not (yet) waiting here, kept so a waiter that registers late
#: still sees its own.
_EARLY = 1024


def new_ticket() -> str:
    """A fresh ticket id (hex, fixed length: the script cuts it from a member)."""
    return secrets.token_hex(8)


_TICKET = re.compile(r"[0-9a-f]{16}")


def check_ticket(ticket: str) -> str:
    """``ticket`` if it is '' or made by :func:`new_ticket`, else ``ConfigError``."""
    if ticket and not (isinstance(ticket, str) and _TICKET.fullmatch(ticket)):
        from rotating_llm.errors import ConfigError

        raise ConfigError("a queue ticket must be 16 lowercase hex digits (new_ticket())")
    return ticket


def tenant_digest(tenant: str | None) -> str:
    """The script's ``tenant`` argument: a digest (a tenant may be an e-mail), ``-`` none."""
    if tenant is None:
        return "-"
    return hashlib.blake2b(tenant.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


class _Slot:
    __slots__ = ("aevent", "event", "loop", "pool")

    def __init__(self, pool: str) -> None:
        self.pool = pool
        self.event = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.aevent: asyncio.Event | None = None

    def set(self) -> None:
        self.event.set()
        if self.loop is not None and self.aevent is not None:
            # (its loop closed: nobody waits there any more)
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self.aevent.set)


class Waiters:
    """This process's queued callers, by ticket, and the subscribers that wake them.

    One per :class:`RedisLimiter` (so one subscriber thread per limiter and Redis
    deployment, started when a first caller queues, ended when idle or closed)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[str, _Slot] = {}
        self._early: OrderedDict[str, None] = OrderedDict()
        self._subs: dict[int, _Subscriber] = {}
        self._closed = False

    # -- the waiter's side ------------------------------------------------------------

    def listen(self, store: Store, pool: str, ticket: str) -> threading.Event | None:
        """Register ``ticket`` (of ``pool``) for wake-ups from ``store``; returns the event
        the store's subscriber sets once it listens (``None``: woken in-process, or
        closed: the waiter looks again on its timer). Starting a thread is cheap enough
        to do on an event loop (once per idle period)."""
        with self._lock:
            slot = self._slots.get(ticket)
            if slot is None:
                slot = self._slots[ticket] = _Slot(pool)
            if self._early.pop(ticket, 0) is None:
                slot.event.set()
            if store.kind == "embedded" or self._closed:
                return None
            sub = self._subs.get(id(store))
            if sub is None or not sub.alive():  # (an idle one leaves _subs under the lock)
                sub = _Subscriber(self, store)
                sub.start()  # (before it is listed: a listed subscriber is alive or ended)
                self._subs[id(store)] = sub
            return sub.ready

    def wait(self, ticket: str, seconds: float) -> bool:
        """Block until ``ticket`` is signalled or ``seconds`` pass; True if signalled."""
        slot = self._slots.get(ticket)
        if slot is None:
            time.sleep(seconds)
            return False
        woken = slot.event.wait(seconds)
        slot.event.clear()
        return woken

    async def await_signal(self, ticket: str, seconds: float) -> bool:
        """Async twin of :meth:`wait` (the loop is never blocked)."""
        slot = self._slots.get(ticket)
        if slot is None:
            await asyncio.sleep(seconds)
            return False
        with self._lock:
            if slot.aevent is None:
                slot.loop, slot.aevent = asyncio.get_running_loop(), asyncio.Event()
            if slot.event.is_set():
                slot.aevent.set()
        try:
            await asyncio.wait_for(slot.aevent.wait(), seconds)
            woken = True
        except asyncio.TimeoutError:
            woken = False
        with self._lock:
            slot.aevent.clear()
            slot.event.clear()
        return woken

    def forget(self, ticket: str) -> None:
        """``ticket`` no longer waits here."""
        with self._lock:
            self._slots.pop(ticket, None)

    def retire(self, sub: _Subscriber) -> bool:
        """Whether idle ``sub`` may end: no waiter here (checked under the lock that
        ``listen`` registers under, so a waiter arriving meanwhile gets a new one)."""
        with self._lock:
            if self._slots and not self._closed:
                return False
            if self._subs.get(id(sub.store)) is sub:
                del self._subs[id(sub.store)]
            return True

    def close(self, within: float = 2.0) -> None:
        """Stop every subscriber thread and wait (at most ``within`` seconds) for each to
        end; none is started after."""
        with self._lock:
            self._closed = True
            subs = list(self._subs.values())
            self._subs.clear()
        for sub in subs:
            sub.stop()
        end = time.monotonic() + within
        for sub in subs:
            sub.join(max(0.0, end - time.monotonic()))

    @property
    def waiting(self) -> int:
        """How many tickets wait in this process."""
        return len(self._slots)

    # -- the signal's side ------------------------------------------------------------

    def wake(self, ticket: str) -> None:
        """``ticket``'s turn may have come (a signal from the store)."""
        with self._lock:
            slot = self._slots.get(ticket)
            if slot is None:
                self._early[ticket] = None
                while len(self._early) > _EARLY:
                    self._early.popitem(last=False)
                return
        slot.set()

    def wake_pool(self, pool: str) -> None:
        """Wake every local waiter of ``pool`` (stores without pub/sub: in-process)."""
        if not self._slots:
            return
        with self._lock:
            slots = [s for s in self._slots.values() if s.pool == pool]
        for slot in slots:
            slot.set()


class _Subscriber:
    """One thread per process and Redis deployment: its pools' signals to the waiters."""

    def __init__(self, waiters: Waiters, store: Store) -> None:
        self.waiters = waiters
        self.store = store
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rotating-llm-queue", daemon=True)
        prefix = "".join("\\" + ch if ch in "*?[]\\" else ch for ch in store.prefix)
        from rotating_llm.limiter._schema import LAYOUT_VERSION

        self.pattern = f"{prefix}v{LAYOUT_VERSION}:{{*}}:q"

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()

    def join(self, seconds: float) -> None:
        if self._thread.is_alive():
            self._thread.join(seconds)

    def _idle(self, since: float) -> bool:
        """Whether to end: stopped, or idle past _IDLE_S with no waiter (then retired)."""
        if self._stop.is_set():
            return True
        return time.monotonic() - since > _IDLE_S and self.waiters.retire(self)

    def _run(self) -> None:
        idle_since = time.monotonic()
        while True:
            try:
                client: Any = self.store.sync
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                try:
                    pubsub.psubscribe(self.pattern)
                    while True:  # (bounded polls: a stop is seen within 0.5 s)
                        msg = pubsub.get_message(timeout=0.5)
                        if msg is None and pubsub.subscribed:
                            self.ready.set()
                        if msg is not None and msg.get("type") == "pmessage":
                            self.waiters.wake(str(msg["data"]))
                        if self.waiters.waiting and not self._stop.is_set():
                            idle_since = time.monotonic()
                        elif self._idle(idle_since):
                            return
                finally:
                    self.ready.clear()
                    pubsub.close()
            except Exception as exc:  # Redis lost or restarted: waiters look again anyway
                logger.debug("queue subscriber: %s", exc)
                if (not self.waiters.waiting or self._stop.is_set()) and self._idle(idle_since):
                    return
                self._stop.wait(0.5)


class QueueOps:
    """The queue's calls of a limiter (mixed into ``RedisLimiter``)."""

    store: Any
    waiters: Waiters

    def _head(self, store: Store, pool: str) -> list[Any]:  # pragma: no cover - the limiter's
        raise NotImplementedError

    def listen(self, pool: str, ticket: str, behind: bool = True) -> None:
        """Have this process woken when ``ticket`` (of ``pool``) is signalled; a waiter
        ``behind`` the head (no timer of its own) waits a moment for a new subscriber."""
        ready = self.waiters.listen(self.store.primary, pool, ticket)
        if behind and ready is not None and not ready.is_set():
            ready.wait(0.5)

    async def alisten(self, pool: str, ticket: str, behind: bool = True) -> None:
        """Async twin of :meth:`listen` (waits for a new subscriber off the loop)."""
        ready = self.waiters.listen(self.store.primary, pool, ticket)
        if behind and ready is not None and not ready.is_set():
            await asyncio.to_thread(ready.wait, 0.5)

    def _leave_op(self, pool: str, ticket: str) -> Any:
        def op(store: Store) -> Store:
            args = [*self._head(store, pool), "leave", ticket]
            store.call("queue", store.pool_keys(pool), args)
            return store

        return op

    def leave(self, pool: str, ticket: str) -> None:
        """Give up ``ticket``'s place in ``pool``'s queue (best effort: it expires anyway);
        on the store it left (Redis's fallback too), the next waiter is woken."""
        self.waiters.forget(ticket)
        try:
            self._wake_local(pool, self.store.run("leave queue", self._leave_op(pool, ticket)))
        except Exception as exc:
            logger.debug("could not leave the queue of %s: %s", pool, exc)

    async def aleave(self, pool: str, ticket: str) -> None:
        """Async twin of :meth:`leave`."""
        self.waiters.forget(ticket)

        async def op(store: Store) -> Store:
            args = [*self._head(store, pool), "leave", ticket]
            await store.acall("queue", store.pool_keys(pool), args)
            return store

        try:
            self._wake_local(pool, await self.store.arun("leave queue", op))
        except Exception as exc:
            logger.debug("could not leave the queue of %s: %s", pool, exc)

    def _wake_local(self, pool: str, store: Store) -> None:
        """After a call on ``store`` that may have made a turn come: on the embedded store
        (no subscriber; Redis's fallback too), wake this process's waiters of ``pool``."""
        if self.waiters.waiting and store.kind == "embedded":
            self.waiters.wake_pool(pool)
