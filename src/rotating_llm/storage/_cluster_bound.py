"""Redis Cluster calls bounded by their caller's deadline.

redis-py's cluster client has no per-call timeout: a stalled node holds a call for its
socket timeout, and the client's retries over the topology add more. So each blocking
call to a cluster runs on a worker thread the caller waits for until its deadline
(``max_wait`` plus one store deadline for an acquire, see ``_timing``), and each async
one is shielded and awaited until then. A call past its deadline raises
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

from rotating_llm.errors import StoreTimeoutError

__all__ = ["ClusterBound"]

T = TypeVar("T")
#: worker threads per cluster store: callers beyond them queue, bounded all the same
WORKERS = 32


class ClusterBound:
    """Runs one cluster store's calls so that none outlasts its caller's deadline."""

    def __init__(self, where: str) -> None:
        self._where = where
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

    def run(self, fn: Callable[[], T], until: float) -> T:
        """``fn()`` on a worker thread, waited for until ``until`` (monotonic)."""
        left = until - time.monotonic()
        if left <= 0:
            raise self._timeout()
        future = self._workers().submit(fn)
        try:
            return future.result(timeout=left)
        except concurrent.futures.TimeoutError:
            future.cancel()  # not started yet: it never runs
            raise self._timeout() from None

    async def arun(self, work: Awaitable[T], until: float) -> T:
        """Await ``work`` until ``until`` (monotonic); past it, it goes on unawaited."""
        task = asyncio.ensure_future(work)
        left = until - time.monotonic()
        try:
            return await asyncio.wait_for(asyncio.shield(task), max(0.0, left))
        except asyncio.TimeoutError:
            raise self._timeout() from None
        finally:
            if not task.done():  # timed out, or its caller was cancelled
                task.add_done_callback(_consume)

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
