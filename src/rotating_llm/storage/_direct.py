"""The one fast path of the sync client: a connection of each thread's own.

A decision sent through redis-py's client pays its pool checkout (a lock, a queue and a
poll for stale data) and its per-command hooks: measured on a 3-key pool, acquire p50
117 us through ``execute_command`` against 70 us here, beside ``client.ping()`` at 56 us
(2.1x against 1.2x; the target is 2x). So a Redis server's script calls are written on
a connection of the calling thread's own, packed by hiredis; everything else, and every
call after a connection error, goes through redis-py's own client and its retry policy.
The cluster and the embedded store use redis-py's client only.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

import redis
from hiredis import pack_command

__all__ = ["DirectConnections"]


class DirectConnections:
    """Per-thread connections to the server of one redis-py client (fork-safe)."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._local = threading.local()
        self._conns: weakref.WeakSet[Any] = weakref.WeakSet()

    def execute(self, *command: Any) -> Any:
        """Send ``command`` on this thread's own connection and read its reply."""
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None or local.pid != os.getpid():  # first use, or a forked child
            pool = self._client.connection_pool
            conn = local.conn = pool.connection_class(**pool.connection_kwargs)
            local.pid = os.getpid()
            self._conns.add(conn)
        try:
            conn.send_packed_command([pack_command(command)])
            return conn.read_response()
        except (redis.ConnectionError, redis.TimeoutError):  # redis-py closed it
            return self._client.execute_command(*command)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        """Close every thread's connection."""
        for conn in list(self._conns):
            conn.disconnect()
