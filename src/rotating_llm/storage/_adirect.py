"""The one fast path of the async client: one pipelined connection per event loop.

Through redis-py's asyncio client every call checks a connection out of the pool and
back (a lock and a queue), so 200 tasks deciding at once serialise on the pool and pay
a round trip each. Here a Redis server's script calls from one loop share one
connection: a call writes its packed command to the transport (no await before the
write, so replies come back in the order of ``waiting``) and awaits a future; a reader
task reads the replies in order and resolves them. Concurrent callers are thereby
pipelined. A connection error fails the calls waiting on that connection, and each
is then sent once more through redis-py's own client (its retry policy decides); the
next call opens a new connection. The cluster and the embedded store use redis-py's
client only.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import redis.exceptions as rex
from hiredis import pack_command

__all__ = ["LoopConnection", "connect_within"]


async def connect_within(conn: Any, seconds: float) -> None:
    """Connect ``conn`` and read its handshake within ``seconds``.

    The library's asyncio connections have no socket timeout (so that writes stay
    synchronous): a server that accepts but does not answer (``DEBUG SLEEP``, a stall)
    would otherwise hold the handshake without bound.
    """
    try:
        await asyncio.wait_for(conn.connect(), seconds)
    except asyncio.TimeoutError:
        await conn.disconnect(nowait=True)
        raise rex.TimeoutError(f"Timeout connecting to Redis within {seconds:g}s") from None


class LoopConnection:
    """One event loop's pipelined connection to the server of a redis-py asyncio client."""

    def __init__(self, client: Any) -> None:
        self._client = client
        kwargs = dict(client.connection_pool.connection_kwargs)
        # writes must reach the transport synchronously, in order: with a socket timeout
        # redis-py writes from a task of its own, so the timeout applies to reads only
        # (``None`` explicitly: redis-py 8 gives a connection a 5 s socket timeout by
        # default, and the connect timeout would follow it)
        self._timeout: float = kwargs.get("socket_timeout") or 5.0
        kwargs["socket_connect_timeout"] = kwargs.get("socket_connect_timeout") or self._timeout
        kwargs["socket_timeout"] = None
        self._kwargs = kwargs
        self._conn: Any = self._new_connection()
        self._ready = False
        self._connecting = asyncio.Lock()
        self._waiting: deque[asyncio.Future[Any]] = deque()
        self._reader: asyncio.Task[None] | None = None
        self._closing: asyncio.Future[None] | None = None

    def _new_connection(self) -> Any:
        return self._client.connection_pool.connection_class(**self._kwargs)

    async def execute(self, *command: Any) -> Any:
        """Send ``command`` on this loop's connection and await its reply."""
        if not self._ready:
            async with self._connecting:  # its handshake is read before anyone else reads
                if not self._ready:
                    await connect_within(self._conn, self._timeout)
                    self._ready = True
        conn = self._conn
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append(fut)
        try:
            await conn.send_packed_command([pack_command(command)], check_health=False)
        except (rex.ConnectionError, rex.TimeoutError, OSError) as exc:
            self._broken(conn, exc)
        if self._reader is None or self._reader.done():
            self._reader = asyncio.ensure_future(self._read(conn))
        try:
            return await fut
        except (rex.ConnectionError, rex.TimeoutError):
            return await self._client.execute_command(*command)

    async def _read(self, conn: Any) -> None:
        while self._waiting and conn is self._conn:
            try:
                reply: Any = await conn.read_response(timeout=self._timeout)
            except rex.ResponseError as exc:
                reply = exc
            except (rex.ConnectionError, rex.TimeoutError, OSError) as exc:
                self._broken(conn, exc)
                return
            fut = self._waiting.popleft()
            if not fut.done():  # a cancelled caller's reply is read and dropped
                if isinstance(reply, Exception):
                    fut.set_exception(reply)
                else:
                    fut.set_result(reply)

    def _broken(self, conn: Any, exc: BaseException) -> None:
        """Fail every call waiting on ``conn`` and start over on a new connection."""
        if conn is not self._conn:
            return
        waiting, self._waiting = self._waiting, deque()
        err = exc if isinstance(exc, rex.RedisError) else rex.ConnectionError(str(exc))
        for fut in waiting:
            if not fut.done():
                fut.set_exception(err)
        self._conn = self._new_connection()
        self._ready = False
        self._closing = asyncio.ensure_future(conn.disconnect(nowait=True))

    async def close(self) -> None:
        """Close the connection (calls still waiting fail)."""
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
        await self._conn.disconnect(nowait=True)
