"""Worker of test_async_path: runs aacquire/acomplete from 40 tasks on one loop and
reports every loop step that blocked in the kernel for more than 10 ms (JSON on stdout)."""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import threading
import time
from typing import Any

from rotating_llm import APIKey, KeyManager, Settings
from rotating_llm.secrets import EnvSecretStore


class _BlockingSteps:
    """Every loop step (callback) that slept in the kernel longer than ``limit`` seconds.

    asyncio's debug mode reports every step over ``slow_callback_duration`` in wall time,
    which on a loaded machine also counts time the thread was merely preempted. A step
    that blocks (a blocking read, connect, sleep or lock) makes the thread wait
    voluntarily: so a step counts here only if it took longer than ``limit`` *and* its
    thread made a voluntary context switch during it.
    """

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.slow: list[str] = []
        self.on = True

    def wrap(self, run: Any) -> Any:
        def timed(handle: Any) -> None:
            before = resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw
            start = time.perf_counter()
            try:
                run(handle)
            finally:
                took = time.perf_counter() - start
                if took > self.limit and self.on:
                    waits = resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw - before
                    if waits:
                        self.slow.append(f"{handle!r} took {took:.3f}s, {waits} wait(s)")

        return timed


def main(redis_url: str, prefix: str) -> dict[str, Any]:
    keys = [
        APIKey(key_id=f"k{i}", model_name="m", provider="x", rpm=10_000, tpm=10**9)
        for i in range(2)
    ]
    km = KeyManager(
        keys,
        settings=Settings(redis_url=redis_url, key_prefix=prefix, window_seconds=30),
        secret_store=EnvSecretStore({f"API_KEY_K{i}": f"sk-test-secret-{i:04d}" for i in range(2)}),
    )
    # In local mode a new manager imports the embedded store on a thread of its own (so a
    # failover need not wait for it). That import holds the GIL in 5 ms slices, and on a
    # loaded machine the loop's thread waits longer for it: another thread holding the
    # GIL, not the async path blocking. Measure once it is done, as a running app would.
    for thread in threading.enumerate():
        if thread.name == "rotating-llm-import":
            thread.join(timeout=30)
    steps = _BlockingSteps(0.010)
    asyncio.events.Handle._run = steps.wrap(asyncio.events.Handle._run)  # type: ignore[method-assign]

    async def warm_up() -> None:  # first use: connections set up, pool registered
        await (await km.aacquire("m", 10)).acomplete(5)
        for key in keys:  # a first secret read runs on a worker thread (a backend may block)
            await km.secret_store.aget_secret(key.key_id)

    async def worker() -> int:
        n = 0
        for _ in range(25):
            lease = await km.aacquire("m", 10)
            await lease.acomplete(3)
            n += 1
        return n

    async def finish() -> None:
        await km.limiter.aflush()
        await km.aclose()

    async def run() -> int:
        # every library call runs in a task of its own; run() only orchestrates
        await asyncio.ensure_future(warm_up())
        tasks = []
        for _ in range(40):
            tasks.append(asyncio.ensure_future(worker()))
            await asyncio.sleep(0)
        served = sum(await asyncio.gather(*tasks))
        # closing hands its flush to a worker thread (off the loop, by design): the loop
        # then shares the GIL with it, which is not a step of the loop blocking
        steps.on = False
        await asyncio.ensure_future(finish())
        return served

    served = asyncio.run(run())
    km.close()
    return {"served": served, "slow": steps.slow}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
