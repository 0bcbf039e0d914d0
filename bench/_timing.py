"""Timing helpers shared by the benchmarks: percentiles and the 1 ms tickers.

A ticker sleeps 1 ms in a loop and records how late it wakes: beside an async load it
runs as a task on the same event loop (a step that blocks the loop delays it), beside a
sync load as a thread (a call that holds the GIL delays it).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["aticker", "atimed", "percentile", "timed"]

TICK = 0.001


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``: the sample at rank ``q * n``, no interpolation."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def aticker(stop: asyncio.Event, lags: list[float]) -> None:
    """Until ``stop``: sleep 1 ms on the running loop, append how late each wake-up was."""
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(TICK)
        lags.append(time.perf_counter() - t - TICK)


async def atimed(
    call: Callable[[], Awaitable[Any]], n: int, times: list[float], lags: list[float]
) -> None:
    """Await ``call`` ``n`` times, appending each duration, with :func:`aticker` beside it."""
    stop = asyncio.Event()
    ticker = asyncio.ensure_future(aticker(stop, lags))
    for _ in range(n):
        t = time.perf_counter()
        await call()
        times.append(time.perf_counter() - t)
    stop.set()
    await ticker


def timed(call: Callable[[], Any], n: int, times: list[float], lags: list[float]) -> None:
    """Call ``call`` ``n`` times, appending each duration, with a ticker thread beside it."""
    stop = threading.Event()

    def tick() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            time.sleep(TICK)
            lags.append(time.perf_counter() - t - TICK)

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    for _ in range(n):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    stop.set()
    ticker.join()
