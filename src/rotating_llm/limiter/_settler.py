"""Completions written to Redis without waiting for their replies.

``Lease.complete`` is bookkeeping: the caller has its answer and should not wait a round
trip for it. On a Redis server the settle script is written to a connection of its own
and the call returns; replies are read later, in batches, or when something needs the
result. What could notice the delay waits for the replies
first: every read of usage through the limiter, a refusal (before it is reported or
waited out), ``close``, and interpreter exit. No thread is involved, so nothing competes
with the caller for the GIL.

A reply that says the script is missing (Redis restarted or was flushed) loads it and
sends that completion again; a lost connection sends the unanswered ones again once.
Completing is idempotent, so a completion applied twice changes nothing. If Redis stays
unreachable the completions are dropped with a warning and the estimates stand until
the window ages them out, as for a process killed before its replies arrived.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any

import redis.exceptions as rex
from hiredis import pack_command

from rotating_llm.errors import StoreError
from rotating_llm.storage import Store, translate_errors
from rotating_llm.storage._store import is_missing

if TYPE_CHECKING:
    from rotating_llm.limiter._limiter import Reservation

__all__ = ["Settler"]

logger = logging.getLogger("rotating_llm.limiter")

_live: weakref.WeakSet[Settler] = weakref.WeakSet()
#: Replies are read once this many are outstanding (those that arrived) ...
_READ_AFTER = 32
#: ... and all of them, waiting, once this many are.
_MAX_UNREAD = 1024


class _Sent:
    """One completion written, and whether it was sent again after loading the script."""

    __slots__ = ("args", "reloaded", "res")

    def __init__(self, res: Reservation, args: list[Any]) -> None:
        self.res, self.args, self.reloaded = res, args, False


class _Channel:
    """One connection to one Redis server, and the completions awaiting its replies."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.conn: Any = store.sync.connection_pool.make_connection()
        self.sent: deque[_Sent] = deque()

    def write(self, item: _Sent) -> None:
        res, args = item.res, item.args
        keys = self.store.pool_keys(res.pool)
        cmd, ref = self.store.command("settle")
        self.sent.append(item)
        self.conn.send_packed_command([pack_command((cmd, ref, len(keys), *keys, *args))])

    def read(self, block: bool, until: float | None = None) -> list[tuple[_Sent, Exception]]:
        """Read the replies that arrived (all of them if ``block``, those arriving before
        ``until`` (monotonic) if given).

        Returns the completions refused because the script or function was missing.
        """
        missing: list[tuple[_Sent, Exception]] = []
        while self.sent and self._ready(block, until):
            item = self.sent[0]
            try:
                self.conn.read_response()
            except rex.ResponseError as exc:
                if item.reloaded or not is_missing(exc):
                    logger.warning("could not complete the lease on %s: %s", item.res.key_id, exc)
                else:
                    item.reloaded = True
                    missing.append((item, exc))
            self.sent.popleft()
        return missing

    def _ready(self, block: bool, until: float | None) -> bool:
        if not block:
            return bool(self.conn.can_read(0))
        if until is None:
            return True
        return bool(self.conn.can_read(max(0.0, until - time.monotonic())))

    def close(self) -> None:
        self.conn.disconnect()


class Settler:
    """Completions queued on one connection per Redis server, without a thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._channels: dict[int, _Channel] = {}
        _live.add(self)

    @property
    def pending(self) -> int:
        """Completions written whose replies were not read yet."""
        return sum(len(ch.sent) for ch in list(self._channels.values()))

    def _channel(self, store: Store) -> _Channel:
        if self._pid != os.getpid():  # a forked child must not share the parent's socket
            self._pid, self._channels = os.getpid(), {}
        ch = self._channels.get(id(store))
        if ch is None:
            ch = self._channels[id(store)] = _Channel(store)
        return ch

    def submit(self, res: Reservation, args: list[Any]) -> None:
        """Write one completion (and read the replies that arrived, now and then)."""
        with self._lock:
            ch = self._channel(res.store)
            try:
                if len(ch.sent) >= _READ_AFTER:  # replies are read in batches
                    self._retry(ch, ch.read(block=len(ch.sent) >= _MAX_UNREAD))
                ch.write(_Sent(res, args))
            except rex.RedisError as raw:  # translated off the hot path
                try:
                    with translate_errors("settle (complete)", ch.store.description):
                        raise raw
                except StoreError as exc:
                    self._resend(ch, exc)

    def flush(self, until: float | None = None) -> None:
        """Read every outstanding reply, so every completion is applied.

        Bounded by the client's socket timeout, or by ``until`` (monotonic): replies not
        there by then stay outstanding (a slow Redis must not hold an acquire up), and
        so does all of it while another thread reads them past ``until``.
        """
        if until is None:
            self._lock.acquire()
        elif not self._lock.acquire(timeout=max(0.0, until - time.monotonic())):
            return
        try:
            if self._pid != os.getpid():  # a forked child: the parent's replies are not ours
                self._pid, self._channels = os.getpid(), {}
                return
            for ch in list(self._channels.values()):
                try:
                    with translate_errors("settle (complete)", ch.store.description):
                        while ch.sent:
                            self._retry(ch, ch.read(block=True, until=until))
                            if until is not None and time.monotonic() >= until:
                                break
                except StoreError as exc:
                    self._resend(ch, exc)
        finally:
            self._lock.release()

    def close(self) -> None:
        """Apply what is outstanding and close the connections."""
        self.flush()
        with self._lock:
            for ch in self._channels.values():
                ch.close()
            self._channels = {}

    def _retry(self, ch: _Channel, missing: list[tuple[_Sent, Exception]]) -> None:
        if missing:  # Redis restarted or was flushed: load the script, send those again
            ch.store.reload("settle", missing[0][1])
            for item, _ in missing:
                ch.write(item)

    def _resend(self, ch: _Channel, first: StoreError) -> None:
        """The connection failed: send the unanswered completions once more, or drop them."""
        unanswered = list(ch.sent)
        ch.sent.clear()
        # a new connection: redis-py leaves the broken one open when the error came from
        # a readiness check (can_read), and a write on it fails again
        ch.conn.disconnect()
        try:
            with translate_errors("settle (complete)", ch.store.description):
                for item in unanswered:
                    ch.write(item)
                self._retry(ch, ch.read(block=True))
        except StoreError as exc:
            lost = len(ch.sent) or len(unanswered)
            ch.sent.clear()
            logger.warning("could not complete %d lease(s): %s (first error: %s)", lost, exc, first)


@atexit.register
def _flush_at_exit() -> None:
    for settler in list(_live):
        if settler.pending:
            settler.flush()
