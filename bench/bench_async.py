"""The async path against an async PING from the same process, in one run.

- ``aacquire`` p50 and ``aacquire + acomplete`` p50 against ``await client.ping()`` on the
  library's own redis-py asyncio client (the issue's targets: at most 1.3x and 1.6x);
- 200 tasks in one process: decisions/s against PINGs/s of 200 tasks (target >= 70%);
- a 1 ms ticker beside each load: its p99 lag (target: no worse than beside the PINGs).

Run: ``python bench/bench_async.py [--quick] [--out bench/results/async.json]`` with
``REDIS_URL`` set (else a throwaway redis-server is started).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from _timing import aticker, percentile

POOL = "abench"


def _manager(url: str) -> Any:
    from rotating_llm import APIKey, KeyManager, Settings
    from rotating_llm.secrets import EnvSecretStore

    keys = [
        APIKey(key_id=f"a{i}", model_name=POOL, provider="x", rpm=10**8, tpm=10**12)
        for i in range(3)
    ]
    env = {f"API_KEY_A{i}": f"bench-secret-{i}" for i in range(3)}
    return KeyManager(
        keys,
        settings=Settings(
            redis_url=url, key_prefix=f"abench{uuid.uuid4().hex[:6]}:", redact_logs=False
        ),
        secret_store=EnvSecretStore(env),
    )


async def _latency(km: Any, n: int) -> dict[str, float]:
    client = km.store.primary.async_client
    ping, acq, both = [], [], []
    for _ in range(3):  # warm
        await client.ping()
        await (await km.aacquire(POOL, 10)).acomplete(7)
    await km.limiter.aflush()
    for _ in range(n):  # interleaved, so load drifts hit all three alike
        t = time.perf_counter()
        await client.ping()
        ping.append(time.perf_counter() - t)
        t = time.perf_counter()
        lease = await km.aacquire(POOL, 10)
        acq.append(time.perf_counter() - t)
        await lease.acomplete(7)
        await km.limiter.aflush()  # untimed: every timing starts on an idle Redis
        t = time.perf_counter()
        lease = await km.aacquire(POOL, 10)
        await lease.acomplete(7)
        both.append(time.perf_counter() - t)
        await km.limiter.aflush()
    p50 = {k: statistics.median(v) * 1e6 for k, v in (("ping", ping), ("aacquire", acq),
                                                       ("aacquire_acomplete", both))}  # fmt: skip
    return {
        "ping_p50_us": p50["ping"],
        "aacquire_p50_us": p50["aacquire"],
        "aacquire_acomplete_p50_us": p50["aacquire_acomplete"],
        "aacquire_ratio": p50["aacquire"] / p50["ping"],
        "aacquire_acomplete_ratio": p50["aacquire_acomplete"] / p50["ping"],
        "target_aacquire_ratio": 1.3,
        "target_aacquire_acomplete_ratio": 1.6,
    }


async def _load(op: Any, tasks: int, seconds: float) -> tuple[float, float]:
    """Ops/s of ``tasks`` tasks looping ``op`` for ``seconds``, and the ticker's p99 lag."""
    stop, lags = asyncio.Event(), []
    done = 0

    async def loop() -> None:
        nonlocal done
        while not stop.is_set():
            await op()
            done += 1

    ticker = asyncio.ensure_future(aticker(stop, lags))
    workers = [asyncio.ensure_future(loop()) for _ in range(tasks)]
    start = time.perf_counter()
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*workers, ticker)
    return done / (time.perf_counter() - start), percentile(lags, 0.99) * 1e3


async def _throughput(km: Any, tasks: int, seconds: float) -> dict[str, float]:
    client = km.store.primary.async_client

    async def decide() -> None:
        await (await km.aacquire(POOL, 10)).acomplete(7)

    ping_rate, ping_lag = await _load(client.ping, tasks, seconds)
    rate, lag = await _load(decide, tasks, seconds)
    await km.limiter.aflush()
    return {
        "tasks": tasks,
        "pings_per_s": ping_rate,
        "decisions_per_s": rate,
        "ratio": rate / ping_rate,
        "target_ratio": 0.7,
        "ticker_p99_lag_ms_beside_pings": ping_lag,
        "ticker_p99_lag_ms_beside_decisions": lag,
    }


async def _run(url: str, n: int, seconds: float) -> dict[str, Any]:
    km = _manager(url)
    try:
        return {
            "latency": await _latency(km, n),
            "throughput": await _throughput(km, 200, seconds),
        }
    finally:
        await km.aclose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="bench/results/async.json")
    args = ap.parse_args()
    url = os.environ.get("REDIS_URL")
    server = None
    if not url:
        from rotating_llm.testing import RedisServer

        server = RedisServer()
        server.start()
        url = server.url
    try:
        n, seconds = (300, 2.0) if args.quick else (3000, 5.0)
        result = {"load_at_start": os.getloadavg()[0], **asyncio.run(_run(url, n, seconds))}
    finally:
        if server is not None:
            server.stop()
    result["load_at_end"] = os.getloadavg()[0]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
