"""The queue's wake-up latency: from capacity returning to the waiting caller's grant.

Usage: python bench/bench_queue.py [--redis-url URL] [--n 100] [--out FILE]

A pool of one key (rpm 1, a 60 s window) is full; a caller in another process waits
(``max_wait`` 120 s) and is therefore queued, its turn signalled, not timed. This
process releases the lease that fills the pool (capacity returns early) and reads the
waiter's grant instant (Redis's clock). Latency: grant instant minus the instant just
before the release (the host's clock, the same machine as Redis), per round, p50/p99,
against the window's granularity (Redis's clock: microseconds) and against the
``queue_ticket_seconds / 3`` a waiter would take if it had to look again by itself.
JSON on stdout (and in ``--out``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import time
import uuid
from typing import Any

from rotating_llm import APIKey, KeyManager, Settings
from rotating_llm.secrets import EnvSecretStore


def _manager(url: str, prefix: str) -> KeyManager:
    keys = [APIKey(key_id="k0", model_name="m", provider="gemini", rpm=1, tpm=10**6)]
    settings = Settings(redis_url=url, key_prefix=prefix, window_seconds=60, max_wait=0)
    return KeyManager(keys, settings=settings, secret_store=EnvSecretStore({"API_KEY_K0": "x"}))


def _waiter(url: str, prefix: str, n: int, conn: Any) -> None:
    km = _manager(url, prefix)
    for _ in range(n):
        conn.recv()  # the pool is full: wait in its queue
        lease = km.acquire("m", 1, max_wait=120)
        assert lease.reservation is not None
        lease.release()
        conn.send(lease.reservation.granted_at_us)
    km.close()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    prefix = f"bq{uuid.uuid4().hex[:8]}:"
    km = _manager(args.redis_url, prefix)
    client = km.limiter.store.primary.sync
    qkey = f"{prefix}v3:{{m}}:q"
    ctx = multiprocessing.get_context("spawn")
    mine, theirs = ctx.Pipe()
    proc = ctx.Process(target=_waiter, args=(args.redis_url, prefix, args.n, theirs))
    proc.start()
    lat: list[float] = []
    for _ in range(args.n):
        held = km.acquire("m", 1)
        mine.send("go")
        while client.zcard(qkey) < 1:  # queued
            time.sleep(0.0005)
        time.sleep(0.01)  # (listening)
        before = time.time()
        held.release()
        granted_us = mine.recv()
        lat.append(granted_us / 1e6 - before)
    proc.join()
    km.close()
    lat.sort()
    out = {
        "what": "queue wake-up: capacity returned (release) to the queued waiter's grant",
        "n": args.n,
        "p50_ms": round(statistics.median(lat) * 1000, 3),
        "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 3),
        "max_ms": round(lat[-1] * 1000, 3),
        "window_granularity_ms": 0.001,
        "self_look_again_ms": 1000.0,  # queue_ticket_seconds (3) / 3: a lost signal's cost
        "note": "quick run on a loaded, shared 2-core machine",
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    return out


if __name__ == "__main__":
    main()
