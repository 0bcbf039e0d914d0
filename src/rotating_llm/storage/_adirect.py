"""The one fast path of the async client: one pipelined connection per event loop.

Through redis-py's asyncio client every call checks a connection out of the pool and
back (a lock and a queue), so 200 tasks deciding at once serialise on the pool and pay
a round trip each. Here a Redis server's calls from one loop share one connection: a
call writes its packed command to the transport (no await before the write, so replies
come back in the order of ``waiting``) and awaits a future; a reader task reads the
replies in order and resolves them. Concurrent callers are thereby pipelined.

Replies are read without a socket timeout. A watchdog, armed while calls wait, fails
each call whose deadline passed with :class:`StoreTimeoutError` (its reply is read and
dropped later: the connection stays usable) and, when no reply came for a piece, asks
the probe whether Redis is lost (see ``_timing``); if so, every waiting call fails with
:class:`LostError` and the store fails over. A connection that broke is opened again
and the calls waiting on it sent once more (calls are idempotent: acquires carry a
request id). The cluster and the embedded store use redis-py's client only.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

import redis.exceptions as rex
from hiredis import pack_command

from rotating_llm.errors import StoreTimeoutError
from rotating_llm.storage._direct import LostError, direct_kwargs
from rotating_llm.storage._timing import (
    MIN_LEFT,
    Liveness,
    connect_end,
    deadline_of,
)

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
    except BaseException:
        # cancelled mid-handshake (or any error redis-py does not clean up after): its
        # replies would be read by the next caller, so the connection must not stay open
        await conn.disconnect(nowait=True)
        raise


_BROKEN = (rex.ConnectionError, rex.TimeoutError, OSError)
_ATTEMPTS = 4


class LoopConnection:
    """One event loop's pipelined connection to the server of a redis-py asyncio client."""

    def __init__(self, client: Any, liveness: Liveness, where: str) -> None:
        self._client = client
        self._liveness = liveness
        self._where = where
        self._kwargs = direct_kwargs(client, None, for_asyncio=True)
        self._conn: Any = self._new_connection()
        self._ready = False
        self._connecting = asyncio.Lock()
        self._waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._reader: asyncio.Task[None] | None = None
        self._closing: asyncio.Future[None] | None = None
        self._watch: asyncio.TimerHandle | None = None
        self._watch_at = 0.0  # when the watchdog runs next (monotonic)
        self._progress = 0.0  # when a reply was last read (or the queue started)
        self._probe: asyncio.Future[None] | None = None

    def _new_connection(self) -> Any:
        return self._client.connection_pool.connection_class(**self._kwargs)

    async def execute(self, *command: Any) -> Any:
        """Send ``command`` on this loop's connection and await its reply."""
        deadline = deadline_of(self._liveness.timing)
        packed = [pack_command(command)]
        loop = asyncio.get_running_loop()
        for _ in range(_ATTEMPTS):
            if not self._ready:
                await self._open(deadline)
            conn = self._conn
            fut: asyncio.Future[Any] = loop.create_future()
            if not self._waiting:
                self._progress = time.monotonic()
            self._waiting.append((fut, deadline))
            try:
                await conn.send_packed_command(packed, check_health=False)
            except _BROKEN as exc:
                self._broken(conn, exc)
            if self._reader is None or self._reader.done():
                self._reader = asyncio.ensure_future(self._read(conn))
            if self._watch is None or deadline < self._watch_at:
                self._arm(time.monotonic())
            try:
                return await fut
            except LostError:
                raise
            except _BROKEN:  # the connection broke: open it again, send once more
                continue
        raise LostError(f"Redis lost: the connection to {self._where} keeps breaking")

    async def _open(self, deadline: float) -> None:
        """Connect (its handshake is read before anyone else reads) within the deadline."""
        async with self._connecting:
            while not self._ready:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StoreTimeoutError(
                        f"Redis at {self._where}: no connection within the call's deadline"
                    )
                conn = self._conn
                # an attempt ends early enough for a probe and a failover to fit
                attempt = connect_end(deadline, time.monotonic()) - time.monotonic()
                conn.socket_connect_timeout = max(
                    0.01, min(self._liveness.timing.connect_timeout, attempt)
                )
                try:
                    await connect_within(conn, max(0.001, attempt))
                    self._ready = True
                except rex.TimeoutError:
                    budget = self._liveness.budget_for(deadline)
                    if budget is not None and await asyncio.to_thread(
                        self._liveness.is_lost, budget
                    ):
                        raise LostError(f"Redis lost: {self._liveness.lost_reason()}") from None
                except rex.AuthenticationError:
                    raise
                except (rex.ConnectionError, OSError) as exc:
                    self._liveness.refused()
                    raise LostError(f"Redis lost: connection refused ({exc})") from None

    async def _read(self, conn: Any) -> None:
        while self._waiting and conn is self._conn:
            try:
                reply: Any = await conn.read_response()
            except rex.ResponseError as exc:
                reply = exc
            except _BROKEN as exc:
                self._broken(conn, exc)
                return
            self._progress = time.monotonic()
            self._liveness.answered()
            fut = self._waiting.popleft()[0]
            if not fut.done():  # a caller past its deadline, or cancelled: reply dropped
                if isinstance(reply, Exception):
                    fut.set_exception(reply)
                else:
                    fut.set_result(reply)

    def _arm(self, now: float) -> None:
        """Run the watchdog after a piece, or at the first deadline if that is sooner."""
        if self._watch is not None:
            self._watch.cancel()
        first = min((d for f, d in self._waiting if not f.done()), default=now + 1.0)
        wait = max(0.001, min(self._liveness.timing.piece, first - now))
        self._watch_at = now + wait
        self._watch = asyncio.get_running_loop().call_later(wait, self._tick)

    def _tick(self) -> None:
        """The watchdog: fail calls past their deadline; probe when no reply came."""
        self._watch = None
        if not self._waiting:
            return
        now = time.monotonic()
        for fut, deadline in self._waiting:
            if deadline <= now and not fut.done():
                fut.set_exception(self._too_late())
        piece = self._liveness.timing.piece
        if now - self._progress >= piece and (self._probe is None or self._probe.done()):
            self._probe = asyncio.ensure_future(self._check(self._conn))
        self._arm(now)

    def _too_late(self) -> StoreTimeoutError:
        return StoreTimeoutError(
            f"Redis at {self._where} did not answer within the call's deadline; "
            "it is slow, not lost"
        )

    async def _check(self, conn: Any) -> None:
        """Probe (on a thread: it blocks) within the last waiting call's deadline; if Redis
        is lost, fail every waiting call over, but refuse those with less than
        ``MIN_LEFT`` left (a failover takes time of its own)."""
        last = max((d for f, d in self._waiting if not f.done()), default=0.0)
        budget = self._liveness.budget_for(last)
        if budget is None or not await asyncio.to_thread(self._liveness.is_lost, budget):
            return
        if conn is not self._conn:
            return
        now = time.monotonic()
        for fut, deadline in self._waiting:
            if deadline - now < MIN_LEFT and not fut.done():
                fut.set_exception(self._too_late())
        self._broken(conn, LostError(f"Redis lost: {self._liveness.lost_reason()}"))

    def _broken(self, conn: Any, exc: BaseException) -> None:
        """Fail every call waiting on ``conn`` and start over on a new connection."""
        if conn is not self._conn:
            return
        waiting, self._waiting = self._waiting, deque()
        err = exc if isinstance(exc, rex.RedisError) else rex.ConnectionError(str(exc))
        for fut, _ in waiting:
            if not fut.done():
                fut.set_exception(err)
        self._conn = self._new_connection()
        self._ready = False
        self._closing = asyncio.ensure_future(conn.disconnect(nowait=True))

    async def close(self) -> None:
        """Close the connection (calls still waiting fail)."""
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
        await self._conn.disconnect(nowait=True)
