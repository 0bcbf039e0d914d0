"""Heartbeats: each long-lived manager on a Redis says, every interval, that it is alive.

A beat writes, with single-key commands only (cluster-safe, no script needed):

    <prefix>v3:{<pool>}:procs   zset  "<host>:<pid>:<id>" -> expiry (ms since the epoch)
    <prefix>v3:{<pool>}:proc:<id> string JSON {pid, host, pools}, PX expiry

The expiry is :data:`EXPIRY_BEATS` intervals ahead, so a process that dies drops out
of :func:`live_processes` within that time. The beat runs on a daemon thread and never
touches an event loop. Each beat also tells the limiter the live processes it saw (the
degraded share's divisor while Redis is lost) and the pool's epoch (a changed one: Redis
lost the pool's state, and this process replays what it knows).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
import weakref
from typing import TYPE_CHECKING

from rotating_llm.limiter._schema import pool_base

if TYPE_CHECKING:
    from rotating_llm.keys.manager import KeyManager
    from rotating_llm.storage import Store

__all__ = ["EXPIRY_BEATS", "Heartbeat", "live_members", "live_processes"]

logger = logging.getLogger("rotating_llm.keys.heartbeat")

#: A beat stays valid this many intervals.
EXPIRY_BEATS = 3
#: The set of a pool lives a day past its last beat (dead members are trimmed on read).
_DAY_MS = 86_400_000


def _procs_key(store: Store, pool: str) -> str:
    return pool_base(store.prefix, pool) + "procs"


def live_members(store: Store, pool: str) -> set[str]:
    """The processes (``host:pid:id``) whose beat for ``pool`` has not yet expired."""
    now_ms = int(time.time() * 1000)
    key = _procs_key(store, pool)
    store.sync.zremrangebyscore(key, "-inf", now_ms)
    raw = store.sync.zrangebyscore(key, now_ms, "+inf")
    return {m.decode() if isinstance(m, bytes) else str(m) for m in raw}


def live_processes(store: Store, pool: str) -> int:
    """How many processes have beaten for ``pool`` and not yet expired."""
    return len(live_members(store, pool))


class Heartbeat:
    """A daemon thread beating for one manager's pools every ``interval`` seconds."""

    def __init__(self, manager: KeyManager, interval: float) -> None:
        self._manager = weakref.ref(manager)
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._new_identity()
        _LIVE.add(self)

    def _new_identity(self) -> None:
        self.pid = os.getpid()
        self.host = socket.gethostname()
        self.member = f"{self.host}:{self.pid}:{uuid.uuid4().hex[:8]}"
        self._pools: set[str] = set()

    def start(self) -> None:
        """Beat once now (so a fresh process counts at once), then on the thread."""
        if self._thread is not None:
            return
        self._stop.clear()
        try:
            self.beat()
        except Exception as exc:  # Redis away at start: the thread keeps trying
            logger.warning("heartbeat not written yet: %s", type(exc).__name__)
        self._thread = threading.Thread(
            target=self._run, name="rotating-llm-heartbeat", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop beating and take this process out of every pool's count."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)
        manager = self._manager()
        if manager is None:
            return
        with contextlib.suppress(Exception):  # best effort: the beat expires anyway
            store = manager.store.primary
            for pool in self._pools:
                store.sync.zrem(_procs_key(store, pool), self.member)
                store.sync.delete(pool_base(store.prefix, pool) + "proc:" + self.member)

    def beat(self) -> None:
        """Write this process's beat for every pool its manager serves now."""
        manager = self._manager()
        if manager is None:
            self._stop.set()
            return
        store = manager.store.primary
        pools = manager.models()
        ttl_ms = int(self.interval * EXPIRY_BEATS * 1000)
        expiry = int(time.time() * 1000) + ttl_ms
        info = json.dumps({"pid": self.pid, "host": self.host, "pools": pools})
        for pool in pools:
            store.sync.zadd(_procs_key(store, pool), {self.member: expiry})
            store.sync.pexpire(_procs_key(store, pool), max(ttl_ms, _DAY_MS))
            store.sync.set(pool_base(store.prefix, pool) + "proc:" + self.member, info, px=ttl_ms)
        self._pools |= set(pools)
        for pool in pools:  # the degraded share's divisor, and whether Redis lost the pool
            members = live_members(store, pool)
            epoch = store.sync.get(pool_base(store.prefix, pool) + "epoch")
            text = epoch.decode() if isinstance(epoch, bytes) else epoch
            manager.limiter.beat_seen(pool, members, self.member, text)
            manager.limiter.snapshot(pool)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception as exc:  # never kill the thread; a missed beat only expires
                logger.debug("heartbeat failed: %s", type(exc).__name__)

    def _after_fork(self) -> None:
        self._thread = None
        self._stop = threading.Event()
        self._new_identity()
        if self._manager() is not None:
            with contextlib.suppress(Exception):
                self.start()


_LIVE: weakref.WeakSet[Heartbeat] = weakref.WeakSet()


def _stop_all() -> None:
    for hb in list(_LIVE):
        hb.stop()


def _restart_all_in_child() -> None:
    for hb in list(_LIVE):
        hb._after_fork()


atexit.register(_stop_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_restart_all_in_child)
