"""Redis Cluster calls bounded by their caller's deadline, slow told from lost.

redis-py's cluster client has no per-call timeout: a stalled node holds a call for its
socket timeout, and the client's retries over the topology (each resending the call,
which is idempotent: acquires carry a request id) add more. So each blocking call to a
cluster runs on a worker thread the caller waits for until its deadline (``max_wait``
plus one store deadline for an acquire, see ``_timing``), and each async one is
shielded and awaited until then. The caller waits in pieces and, after a piece without
an answer, asks the cluster's :class:`~rotating_llm.storage._timing.Liveness`, as a
single server's caller does: a cluster whose primaries answer a probe (``PING`` on a
fresh connection to each) is slow, not lost, however long the client's socket timeout
is, and is waited for; one silent to probes for ``store_lost_after`` is lost
(:class:`LostError`: fail over). A call past its deadline raises
:class:`~rotating_llm.errors.StoreTimeoutError` (slow, not lost: no failover); the call
itself ends in the background, and an acquire given up on so is sent again with the
same request id and its grant released, as on a single server.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.exceptions as rex

from rotating_llm.errors import StoreTimeoutError
from rotating_llm.storage._direct import LostError, ping_fresh
from rotating_llm.storage._timing import Liveness, piece_of, probe_budget

__all__ = ["ClusterBound", "ping_primaries"]

T = TypeVar("T")
#: worker threads per cluster store: callers beyond them queue, bounded all the same
WORKERS = 32


def ping_primaries(cluster: Any, timeout: float) -> None:
    """``PING`` every primary of ``cluster`` on a fresh connection, side by side, each
    within ``timeout`` seconds (redis-py's ``ConnectionError`` if one refused,
    ``TimeoutError`` if one was silent). Side by side, so that a primary late in the
    list is asked with the whole timeout too, not with what the others left."""
    # (a node not yet connected to is not waited for)
    clients = [n.redis_connection for n in cluster.get_primaries() if n.redis_connection]
    if len(clients) <= 1:
        for client in clients:
            ping_fresh(client, timeout)
        return
    with concurrent.futures.ThreadPoolExecutor(
        len(clients), thread_name_prefix="rotating-llm-probe"
    ) as pool:
        futures = [pool.submit(ping_fresh, client, timeout) for client in clients]
    errors = [f.exception() for f in futures if f.exception() is not None]
    refused = [e for e in errors if not isinstance(e, rex.TimeoutError)]
    if refused or errors:
        raise (refused or errors)[0]  # type: ignore[misc]


class ClusterBound:
    """Runs one cluster store's calls so that none outlasts its caller's deadline."""

    def __init__(self, where: str, liveness: Liveness) -> None:
        self._where = where
        self._liveness = liveness
        self._timing = liveness.timing
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def _timeout(self) -> StoreTimeoutError:
        return StoreTimeoutError(
            f"Redis Cluster at {self._where} did not answer within the call's deadline"
        )

    def _workers(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    WORKERS, thread_name_prefix="rotating-llm-cluster"
                )
            return self._pool

    def _slow_or_lost(self, until: float) -> None:
        """No answer yet: :class:`StoreTimeoutError` past the deadline, :class:`LostError`
        if the cluster is lost, else return (slow: wait on)."""
        if time.monotonic() >= until:
            raise self._timeout()
        budget = self._liveness.budget_for(until)
        if budget is not None and self._liveness.is_lost(budget):
            raise LostError(f"Redis Cluster lost: {self._liveness.lost_reason()}")

    def run(self, fn: Callable[[], T], until: float) -> T:
        """``fn()`` on a worker thread, waited for until ``until`` (monotonic) unless the
        cluster is found lost first; after the client's own socket timeout on a cluster
        that is slow, not lost, ``fn()`` once more (calls are idempotent)."""
        if until - time.monotonic() <= 0:
            raise self._timeout()
        future = self._workers().submit(fn)
        try:
            while True:
                try:
                    out = future.result(timeout=piece_of(self._timing, until, time.monotonic()))
                except concurrent.futures.TimeoutError:
                    self._slow_or_lost(until)
                    continue
                except rex.TimeoutError:
                    self._slow_or_lost(until)
                    future = self._workers().submit(fn)
                    continue
                self._liveness.answered()
                return out
        finally:
            future.cancel()  # not started yet: it never runs (done or running: no-op)

    async def arun(self, again: Callable[[], Awaitable[T]], until: float) -> T:
        """Async twin of :meth:`run`: ``again()`` awaited (shielded) until ``until``; past
        it, or lost, the call goes on unawaited. The probe runs beside the call (on a
        thread: it blocks), so a reply is never held up by it."""
        task = asyncio.ensure_future(again())
        probe: asyncio.Future[bool] | None = None
        next_probe = time.monotonic() + self._timing.piece  # at most one probe a piece
        try:
            while True:
                piece = piece_of(self._timing, until, time.monotonic())
                waiting: set[asyncio.Future[Any]] = {task} if probe is None else {task, probe}
                await asyncio.wait(waiting, timeout=piece, return_when=asyncio.FIRST_COMPLETED)
                if task.done():
                    try:
                        out = task.result()
                    except rex.TimeoutError:  # the client's own socket timeout: slow?
                        task = asyncio.ensure_future(again())  # (lost: the probe says)
                    else:
                        self._liveness.answered()
                        return out
                if probe is not None and probe.done():
                    if probe.result():
                        raise LostError(f"Redis Cluster lost: {self._liveness.lost_reason()}")
                    probe = None
                now = time.monotonic()
                if now >= until:
                    raise self._timeout()
                budget = probe_budget(until, now)
                if probe is None and budget is not None and now >= next_probe:
                    probe = asyncio.ensure_future(asyncio.to_thread(self._liveness.is_lost, budget))
                    next_probe = now + self._timing.piece
        finally:
            if not task.done():  # timed out, lost, or its caller was cancelled
                task.add_done_callback(_consume)
            if probe is not None and not probe.done():
                probe.add_done_callback(_consume)

    def close(self) -> None:
        """Stop the worker threads once their calls end (queued ones are dropped)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def _consume(task: asyncio.Future[Any]) -> None:
    """Read the outcome of a call nobody awaits any more (no 'never retrieved' noise)."""
    if not task.cancelled():
        task.exception()
