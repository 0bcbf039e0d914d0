"""Completions written from an event loop without waiting for their replies.

The async twin of :mod:`rotating_llm.limiter._settler`, with the same contract:
``await Lease.acomplete()`` writes the settle script on an asyncio connection of its
own (one per event loop and Redis server) and returns; a reader task of that loop reads
the replies. Nothing here blocks the loop: the write goes to the transport's buffer
(``drain`` waits only when the kernel's buffer is full), the reader awaits, and loading
a missing script runs in a worker thread.

What could notice the delay waits for the replies first: a refusal in ``aacquire``
(this loop's own completions may free room) and :meth:`AsyncSettler.aclose`. Past
``_MAX_UNREAD`` unanswered completions a writer waits for the reader (back-pressure)
instead of queueing without bound.

A reply that says the script is missing (Redis restarted or was flushed) loads it and
sends that completion again; a lost connection sends the unanswered ones again once on a
new connection, then drops them with a warning: completing is idempotent, and an
estimate that was never corrected ages out of the window by itself. A loop closed while
replies are unread loses only those replies: the completions were already written.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any

import redis.exceptions as rex
from hiredis import pack_command

from rotating_llm.limiter._settler import _MAX_UNREAD, _Sent
from rotating_llm.storage._adirect import connect_within
from rotating_llm.storage._store import is_missing

if TYPE_CHECKING:
    from rotating_llm.limiter._limiter import Reservation
    from rotating_llm.storage import Store

__all__ = ["CLIENT_NAME", "AsyncSettler"]

logger = logging.getLogger("rotating_llm.limiter")

#: The name of the connections that carry completions (``CLIENT LIST``).
CLIENT_NAME = "rotating-llm:settle"


class _Channel:
    """One asyncio connection to one Redis server, the completions awaiting replies on
    it, and the task that reads them."""

    def __init__(self, store: Store) -> None:
        self.store = store
        pool = store.async_client.connection_pool
        kwargs = dict(pool.connection_kwargs)
        # writes must reach the transport in the order of ``sent``, synchronously: with a
        # socket timeout redis-py writes from a task of its own, so it is applied on reads
        # (``None`` explicitly: redis-py 8 gives a connection a 5 s socket timeout by
        # default, and the connect timeout would follow it)
        self.read_timeout: float = kwargs.get("socket_timeout") or 5.0
        kwargs["socket_connect_timeout"] = kwargs.get("socket_connect_timeout") or self.read_timeout
        kwargs["socket_timeout"] = None
        kwargs["client_name"] = CLIENT_NAME  # so an operator can tell it in CLIENT LIST
        self._kwargs, self._conn_class = kwargs, pool.connection_class
        self.conn: Any = self._new_connection()
        self.sent: deque[_Sent] = deque()
        self.reader: asyncio.Task[None] | None = None
        self.connecting = asyncio.Lock()
        # redis-py reports a connection as connected while its handshake is still read:
        # nothing else may read or write on it before that ends
        self.ready = False
        self.drained = asyncio.Event()
        self.drained.set()

    def _new_connection(self) -> Any:
        return self._conn_class(**self._kwargs)

    async def connect(self) -> None:
        if not self.ready:
            async with self.connecting:
                if not self.ready:
                    await connect_within(self.conn, self.read_timeout)
                    self.ready = True

    async def write(self, item: _Sent) -> None:
        keys = self.store.pool_keys(item.res.pool)
        cmd, ref = self.store.command("settle")
        self.sent.append(item)
        self.drained.clear()
        # connected: writelines runs before the first await, so order matches ``sent``
        await self.conn.send_packed_command(
            [pack_command((cmd, ref, len(keys), *keys, *item.args))], check_health=False
        )
        if self.reader is None or self.reader.done():
            self.reader = asyncio.get_running_loop().create_task(self._read_all())

    async def _read_all(self) -> None:
        try:
            while self.sent:
                item = self.sent[0]
                try:
                    await self.conn.read_response(timeout=self.read_timeout)
                except rex.ResponseError as exc:
                    await self._refused(item, exc)
                self.sent.popleft()
        except (rex.ConnectionError, rex.TimeoutError, OSError) as exc:
            await self._resend(exc)
        finally:
            if not self.sent:
                self.drained.set()

    async def _refused(self, item: _Sent, exc: rex.ResponseError) -> None:
        if item.reloaded or not is_missing(exc):
            logger.warning("could not complete the lease on %s: %s", item.res.key_id, exc)
            return
        item.reloaded = True  # Redis restarted or was flushed: load, then send it again
        await asyncio.to_thread(self.store.reload, "settle", exc)
        again = _Sent(item.res, item.args)
        again.reloaded = True
        self.sent.append(again)
        await self.conn.send_packed_command(
            [pack_command(self._command(again))], check_health=False
        )

    def _command(self, item: _Sent) -> tuple[Any, ...]:
        keys = self.store.pool_keys(item.res.pool)
        cmd, ref = self.store.command("settle")
        return (cmd, ref, len(keys), *keys, *item.args)

    async def _resend(self, first: BaseException) -> None:
        """The connection failed: send the unanswered completions once more, or drop them."""
        unanswered = list(self.sent)
        self.sent.clear()
        self.ready = False
        await self.conn.disconnect(nowait=True)
        self.conn = self._new_connection()
        try:
            await self.connect()
            for item in unanswered:
                self.sent.append(item)
                await self.conn.send_packed_command(
                    [pack_command(self._command(item))], check_health=False
                )
            while self.sent:
                try:
                    await self.conn.read_response(timeout=self.read_timeout)
                except rex.ResponseError as exc:
                    logger.warning(
                        "could not complete the lease on %s: %s", self.sent[0].res.key_id, exc
                    )
                self.sent.popleft()
        except (rex.RedisError, OSError) as exc:
            lost = len(self.sent) or len(unanswered)
            self.sent.clear()
            logger.warning("could not complete %d lease(s): %s (first error: %s)", lost, exc, first)

    async def close(self) -> None:
        if self.reader is not None and not self.reader.done():
            self.reader.cancel()
        await self.conn.disconnect(nowait=True)


class AsyncSettler:
    """Completions queued on one asyncio connection per event loop and Redis server."""

    def __init__(self) -> None:
        self._channels: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[int, _Channel]
        ] = weakref.WeakKeyDictionary()

    @property
    def pending(self) -> int:
        """Completions written from any loop whose replies were not read yet."""
        return sum(len(ch.sent) for chans in list(self._channels.values()) for ch in chans.values())

    def _loop_channels(self) -> dict[int, _Channel]:
        loop = asyncio.get_running_loop()
        chans = self._channels.get(loop)
        if chans is None:
            chans = self._channels[loop] = {}
        return chans

    async def submit(self, res: Reservation, args: list[Any]) -> None:
        """Write one completion; returns once it is in the connection's send buffer."""
        chans = self._loop_channels()
        ch = chans.get(id(res.store))
        if ch is None:
            ch = chans[id(res.store)] = _Channel(res.store)
        await ch.connect()
        if len(ch.sent) >= _MAX_UNREAD:
            await ch.drained.wait()
        try:
            await ch.write(_Sent(res, args))
        except (rex.ConnectionError, rex.TimeoutError, OSError) as exc:
            await ch._resend(exc)

    async def flush(self) -> None:
        """Wait until every completion this loop wrote is answered."""
        for ch in list(self._loop_channels().values()):
            while ch.sent:
                reader = ch.reader
                if reader is None or reader.done():
                    reader = ch.reader = asyncio.get_running_loop().create_task(ch._read_all())
                await asyncio.shield(reader)

    async def aclose(self) -> None:
        """Apply what this loop wrote, then close its connections."""
        await self.flush()
        loop = asyncio.get_running_loop()
        for ch in (self._channels.pop(loop, None) or {}).values():
            await ch.close()
