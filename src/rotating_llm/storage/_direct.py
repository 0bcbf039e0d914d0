"""The one fast path of the sync client: a connection of each thread's own.

A decision sent through redis-py's client pays its pool checkout (a lock, a queue and a
poll for stale data) and its per-command hooks: measured on a 3-key pool, acquire p50
117 us through ``execute_command`` against 70 us here, beside ``client.ping()`` at 56 us
(2.1x against 1.2x; the target is 2x). So a Redis server's calls are written on a
connection of the calling thread's own, packed by hiredis.

A reply is awaited on that connection until the call's deadline (see ``_timing``), in
short pieces (the socket timeout), asking between pieces whether Redis is lost: a slow
Redis is waited for, never sent the call again while the first copy may still run. A
connection that broke (reset) is opened again and the call sent once more (every call
is idempotent: acquires carry a request id); a refused connection means Redis is lost.
The cluster and the embedded store use redis-py's client only.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from typing import Any

import redis
from hiredis import pack_command
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from rotating_llm.errors import StoreTimeoutError
from rotating_llm.storage._timing import (
    Liveness,
    connect_end,
    deadline_of,
    piece_of,
)

__all__ = ["DirectConnections", "LostError", "connect_by", "direct_kwargs", "ping_fresh"]


class LostError(redis.ConnectionError):
    """Redis is lost (refused, or silent past ``store_lost_after``): fail over."""


_BROKEN = (redis.ConnectionError, redis.TimeoutError, OSError)


def direct_kwargs(
    client: Any, socket_timeout: float | None, *, for_asyncio: bool = False
) -> dict[str, Any]:
    """A client's connection settings for a connection of our own: no retries of its
    own (the deadline decides), reads that wait ``socket_timeout`` at a time.

    ``for_asyncio``: the connection is an asyncio one, which takes redis-py's asyncio
    ``Retry`` (redis-py 8 warns when given the synchronous one)."""
    kwargs = dict(client.connection_pool.connection_kwargs)
    kwargs["retry"] = (AsyncRetry if for_asyncio else Retry)(NoBackoff(), 0)
    kwargs["socket_timeout"] = socket_timeout
    return kwargs


def _left(end: float) -> float:
    """Seconds left before ``end``; redis-py's ``TimeoutError`` if none."""
    left = end - time.monotonic()
    if left <= 0:
        raise redis.TimeoutError("no answer within the time allowed")
    return left


def connect_by(conn: Any, end: float, read_wait: float | None = None) -> None:
    """Connect ``conn`` and read its handshake by ``end`` (monotonic): the socket's
    connect and the handshake's replies share that time, not a timeout each (and each
    handshake reply waits at most ``read_wait``, if given)."""

    def handshake(c: Any) -> None:
        sock = getattr(c, "_sock", None)
        if sock is not None:  # its reads wait what is left, not a fresh socket timeout
            left = _left(end)
            sock.settimeout(left if read_wait is None else min(read_wait, left))
        c.on_connect()  # (on an error redis-py closes the socket)
        if sock is not None:
            sock.settimeout(c.socket_timeout)

    conn.socket_connect_timeout = _left(end)
    before, conn.redis_connect_func = conn.redis_connect_func, handshake
    try:
        conn.connect()
    finally:
        conn.redis_connect_func = before


def ping_fresh(client: Any, timeout: float) -> None:
    """``PING`` the server of ``client`` on a fresh connection within ``timeout`` seconds
    in all, to connect and to answer (redis-py's ``ConnectionError`` if refused,
    ``TimeoutError`` if silent)."""
    end = time.monotonic() + timeout
    conn = client.connection_pool.connection_class(**direct_kwargs(client, timeout))
    try:
        connect_by(conn, end)
        conn.send_command("PING", check_health=False)
        conn.read_response(timeout=_left(end))
    finally:
        conn.disconnect()


class DirectConnections:
    """Per-thread connections to the server of one redis-py client (fork-safe)."""

    def __init__(self, client: redis.Redis, liveness: Liveness, where: str) -> None:
        self._client = client
        self._liveness = liveness
        self._where = where
        self._kwargs = direct_kwargs(client, liveness.timing.piece)
        self._local = threading.local()
        self._conns: weakref.WeakSet[Any] = weakref.WeakSet()

    def _conn(self) -> Any:
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None or local.pid != os.getpid():  # first use, or a forked child
            conn = local.conn = self._client.connection_pool.connection_class(**self._kwargs)
            local.pid = os.getpid()
            self._conns.add(conn)
        return conn

    def execute(self, *command: Any) -> Any:
        """Send ``command`` on this thread's own connection and read its reply."""
        packed = [pack_command(command)]
        conn = self._conn()
        if conn._sock is None:  # first use (or after a break): connect within the deadline
            try:
                self._connect(conn, deadline_of(self._liveness.timing), 0, None)
            except BaseException:
                conn.disconnect()
                raise
        try:
            conn.send_packed_command(packed, check_health=False)
        except redis.AuthenticationError:
            raise
        except _BROKEN as exc:
            return self._slow(conn, packed, exc, sent=False)
        try:
            reply = conn.read_response(disconnect_on_error=False)
        except redis.ResponseError:
            raise
        except _BROKEN as exc:
            return self._slow(conn, packed, exc, sent=True)
        except BaseException:  # interrupted: the reply would be read by the next call
            conn.disconnect()
            raise
        self._liveness.answered()
        return reply

    def _slow(self, conn: Any, packed: list[Any], exc: BaseException, sent: bool) -> Any:
        """Wait for the reply on ``conn`` until the call's deadline (``sent``: the command
        went out on it and it is open); reopen a broken connection and send again."""
        timing = self._liveness.timing
        deadline = deadline_of(timing)
        start, breaks = time.monotonic(), 0
        while True:
            try:
                if not (sent and isinstance(exc, redis.TimeoutError)):
                    conn.disconnect()  # broken (or its write failed): open it again
                    breaks += 1
                    sent = False
                    self._connect(conn, deadline, breaks, exc)
                    conn.send_packed_command(packed, check_health=False)
                    sent = True
                else:
                    now = time.monotonic()
                    if now >= deadline:
                        raise StoreTimeoutError(
                            f"Redis at {self._where} did not answer within the call's "
                            f"deadline ({now - start:.2f}s more); it is slow, not lost"
                        )
                    if self._lost(deadline):
                        raise LostError(f"Redis lost: {self._liveness.lost_reason()}")
                piece = piece_of(timing, deadline, time.monotonic())
                reply = conn.read_response(disconnect_on_error=False, timeout=piece or 0.001)
            except (redis.ResponseError, redis.AuthenticationError):
                raise
            except LostError:
                conn.disconnect()
                raise
            except _BROKEN as err:
                exc = err
                continue
            except BaseException:  # our own errors, or interrupted: drop the reply
                conn.disconnect()
                raise
            self._liveness.answered()
            return reply

    def _lost(self, deadline: float) -> bool:
        """Whether Redis is lost, asked with time left for a failover (else: not yet,
        but the silence still counts, so that a later call with time left fails over)."""
        budget = self._liveness.budget_for(deadline)
        return budget is not None and self._liveness.is_lost(budget)

    def _connect(self, conn: Any, deadline: float, breaks: int, why: BaseException | None) -> None:
        """Connect ``conn`` again within the deadline, else :class:`LostError` (refused,
        or silent past ``store_lost_after``) or :class:`StoreTimeoutError`."""
        timing = self._liveness.timing
        if breaks > 3:
            raise LostError(f"Redis lost: the connection keeps breaking ({why})")
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise StoreTimeoutError(
                    f"Redis at {self._where}: no connection within the deadline"
                )
            try:
                # each handshake reply waits a piece, as replies do: then the probe; the
                # connect ends early enough for a probe and a failover to fit the deadline
                end = min(connect_end(deadline, now), now + timing.connect_timeout)
                connect_by(conn, end, timing.piece)
                return
            except redis.TimeoutError:  # no answer to connect or handshake: slow or lost
                if self._lost(deadline):
                    raise LostError(f"Redis lost: {self._liveness.lost_reason()}") from None
            except redis.AuthenticationError:
                raise
            except (redis.ConnectionError, OSError) as err:
                self._liveness.refused()
                raise LostError(f"Redis lost: connection refused ({err})") from None

    def close(self) -> None:
        """Close every thread's connection."""
        for conn in list(self._conns):
            conn.disconnect()
