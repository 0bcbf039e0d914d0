"""The queue's wake-up latency: from capacity returning to the waiting caller's grant.

Usage: python bench/bench_queue.py [--redis-url URL] [--n 100] [--waiters 200] [--out FILE]

A pool of one key (rpm 1, a 60 s window) is full; a caller in another process waits
(``max_wait`` 120 s) and is therefore queued, its turn signalled, not timed. This
process releases the lease that fills the pool (capacity returns early) and reads the
waiter's grant instant (Redis's clock). Latency: grant instant minus the instant just
before the release (the host's clock, the same machine as Redis), per round, p50/p99,
against the window's granularity (Redis's clock: microseconds) and against the
``queue_ticket_seconds / 3`` a waiter would take if it had to look again by itself.
``by_time``: the same when capacity returns by the window sliding (a 0.2 s window): the
waiter's grant minus the instant the held request left the window (both Redis's clock).
``priority_order``: ``--waiters`` waiters of mixed priorities across 4 processes queue
on a full pool whose capacity then returns at once; their grants, in grant order, must
be in priority order exactly (``exact``: true).
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


def _manager(url: str, prefix: str, window: float = 60, rpm: int = 1) -> KeyManager:
    keys = [APIKey(key_id="k0", model_name="m", provider="gemini", rpm=rpm, tpm=10**9)]
    settings = Settings(redis_url=url, key_prefix=prefix, window_seconds=window, max_wait=0)
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


def _waiter_by_time(url: str, prefix: str, n: int, conn: Any) -> None:
    km = _manager(url, prefix, window=0.2)
    for _ in range(n):
        conn.recv()
        lease = km.acquire("m", 1, max_wait=5)
        assert lease.reservation is not None
        conn.send(lease.reservation.granted_at_us)
        lease.complete(1)  # (it holds the next window)
    km.close()


def _many(url: str, prefix: str, prios: list[int], rpm: int) -> list[tuple[int, int]]:
    import threading

    km = _manager(url, prefix, rpm=rpm)
    out: list[tuple[int, int]] = []
    lock = threading.Lock()

    def one(p: int) -> None:
        lease = km.acquire("m", 1, max_wait=120, priority=p)
        assert lease.reservation is not None
        with lock:
            out.append((p, lease.reservation.granted_at_us))
        lease.release()

    threads = [threading.Thread(target=one, args=(p,)) for p in prios]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    km.close()
    return out


def _pcts(lat: list[float]) -> dict[str, float]:
    lat = sorted(lat)
    return {
        "p50_ms": round(statistics.median(lat) * 1000, 3),
        "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 3),
        "max_ms": round(lat[-1] * 1000, 3),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--waiters", type=int, default=200)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    prefix = f"bq{uuid.uuid4().hex[:8]}:"
    km = _manager(args.redis_url, prefix)
    client = km.limiter.store.primary.sync
    qkey = f"{prefix}v3:{{m}}:q"
    ctx = multiprocessing.get_context("spawn")
    mine, theirs = ctx.Pipe()
    proc = ctx.Process(target=_waiter, args=(args.redis_url, prefix, args.n + 1, theirs))
    proc.start()
    lat: list[float] = []
    for _ in range(args.n + 1):  # (the first round warms the waiter up: not counted)
        held = km.acquire("m", 1)
        mine.send("go")
        while client.zcard(qkey) < 1:  # queued
            time.sleep(0.0005)
        time.sleep(0.01)  # (listening)
        before = time.time()
        held.release()
        granted_us = mine.recv()
        lat.append(granted_us / 1e6 - before)
    lat = lat[1:]
    proc.join()
    km.close()

    prefix = f"bq{uuid.uuid4().hex[:8]}:"
    km = _manager(args.redis_url, prefix, window=0.2)
    client = km.limiter.store.primary.sync
    qkey = f"{prefix}v3:{{m}}:q"
    mine, theirs = ctx.Pipe()
    proc = ctx.Process(target=_waiter_by_time, args=(args.redis_url, prefix, args.n + 1, theirs))
    proc.start()
    by_time: list[float] = []
    for _ in range(args.n + 1):  # (the first round warms the waiter up: not counted)
        held = km.acquire("m", 1, max_wait=5)
        assert held.reservation is not None
        mine.send("go")
        granted_us = mine.recv()
        by_time.append((granted_us - held.reservation.granted_at_us - 200_000) / 1e6)
        held.complete(1)
        time.sleep(0.25)  # (the waiter's grant leaves the window)
    proc.join()
    km.close()
    by_time = by_time[1:]

    prefix = f"bq{uuid.uuid4().hex[:8]}:"
    total = args.waiters - args.waiters % 4
    km = _manager(args.redis_url, prefix, rpm=total * 4)
    client = km.limiter.store.primary.sync
    qkey = f"{prefix}v3:{{m}}:q"
    held_all = [km.acquire("m", 1) for _ in range(total * 4)]
    prios = [[(i * 37 + j * 11) % 41 - 20 for i in range(total // 4)] for j in range(4)]
    with ctx.Pool(4) as pool:
        jobs = [pool.apply_async(_many, (args.redis_url, prefix, p, total * 4)) for p in prios]
        while client.zcard(qkey) < total:
            time.sleep(0.01)
        t0 = time.monotonic()
        for lease in held_all:
            lease.release()
        grants = sorted((g for j in jobs for g in j.get(300)), key=lambda g: g[1])
        spent = time.monotonic() - t0
    km.close()
    order = [p for p, _ in grants]
    out = {
        "what": "queue wake-up: capacity returned (release) to the queued waiter's grant",
        "n": args.n,
        **_pcts(lat),
        "by_time": {"what": "capacity back by the window sliding (0.2 s)", **_pcts(by_time)},
        "window_granularity_ms": 0.001,
        "self_look_again_ms": 1000.0,  # queue_ticket_seconds (3) / 3: a lost signal's cost
        "priority_order": {
            "waiters": total,
            "processes": 4,
            "granted": len(order),
            "exact": order == sorted(order, reverse=True) and len(order) == total,
            "seconds_to_serve_all": round(spent, 3),
        },
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
