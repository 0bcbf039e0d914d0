"""The chaos table's stress mix: many sync threads and asyncio tasks in many processes on
one small pool, a healthy Redis, the default ``local`` mode and store timings.

``SYNC_PROCS`` processes of ``THREADS`` threads and ``ASYNC_PROCS`` processes of
``TASKS`` asyncio tasks acquire from one pool of ``KEYS`` keys (``RPM`` requests per
``WINDOW`` seconds each) for ``seconds``, completing every lease at once. Every grant is
recorded with its instant on Redis's clock, so the most grants of a key in any window
(sliding, as the limiter counts) is read off the run; what Redis holds at the end is
compared, reservation by reservation, with what the callers were granted.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import random
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

__all__ = [
    "ASYNC_PROCS",
    "KEYS",
    "RPM",
    "SYNC_PROCS",
    "TASKS",
    "THREADS",
    "WINDOW",
    "Tally",
    "grant_of",
    "max_in_window",
    "run_stress",
    "start_together",
    "wait_for_go",
]

KEYS, RPM, WINDOW = 3, 7, 5.0
SYNC_PROCS, THREADS = 8, 20
ASYNC_PROCS, TASKS = 8, 50
MAX_WAIT = 0.5
#: a refused caller's pause before it asks again (random in this range, seconds)
BACKOFF = (0.1, 0.4)


class Tally:
    """What one worker's callers got (shared by its threads or tasks)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.grants: list[dict[str, Any]] = []
        self.errors: Counter[str] = Counter()
        self.longest, self.slowest = 0.0, ""

    def call(self, took: float, outcome: str, grant: dict[str, Any] | None) -> None:
        """Note one call's outcome: a grant, or the name of what was raised."""
        with self.lock:
            if grant is not None:
                self.grants.append(grant)
            else:
                self.errors[outcome] += 1
            if took > self.longest:
                self.longest, self.slowest = took, outcome

    def result(self) -> dict[str, Any]:
        """The tally as plain data (sent back from a worker process)."""
        return {
            "grants": self.grants,
            "errors": dict(self.errors),
            "longest": self.longest,
            "slowest": self.slowest,
        }


def grant_of(lease: Any) -> dict[str, Any]:
    """What the table needs of a lease: key, store, reservation id, instant."""
    res = lease.reservation
    return {
        "key": lease.key_id,
        "embedded": bool(res is not None and res.store.is_embedded),
        "rid": res.reservation_id if res is not None else "",
        "at_us": res.granted_at_us if res is not None else 0,
    }


def max_in_window(grants: list[dict[str, Any]], window_s: float) -> dict[str, int]:
    """Per key, the most grants whose instants fall in one window (``(t - w, t]``)."""
    window_us = int(window_s * 1_000_000)
    by_key: dict[str, list[int]] = {}
    for g in grants:
        by_key.setdefault(g["key"], []).append(int(g["at_us"]))
    out: dict[str, int] = {}
    for key, times in by_key.items():
        times.sort()
        best, lo = 0, 0
        for hi, t in enumerate(times):
            while times[lo] <= t - window_us:
                lo += 1
            best = max(best, hi - lo + 1)
        out[key] = best
    return out


def start_together(control: Path, workers: int, timeout: float = 300.0) -> float:
    """Wait until ``workers`` processes said they are ready, then tell them all to start
    half a second from now (wall clock); returns that instant."""
    deadline = time.monotonic() + timeout
    while len(list(control.glob("ready-*"))) < workers:
        if time.monotonic() > deadline:
            raise TimeoutError("the workers did not get ready")
        time.sleep(0.05)
    start_at = time.time() + 0.5
    (control / "go.tmp").write_text(repr(start_at))
    (control / "go.tmp").rename(control / "go")
    return start_at


def wait_for_go(control: Path, wid: str, timeout: float = 300.0) -> None:
    """Say this worker is ready, then wait for the start instant ``start_together`` set."""
    (control / f"ready-{wid}").touch()
    deadline = time.monotonic() + timeout
    while not (control / "go").exists():
        if time.monotonic() > deadline:
            raise TimeoutError("no start signal")
        time.sleep(0.02)
    start_at = float((control / "go").read_text())
    while time.time() < start_at:
        time.sleep(0.005)


def _manager(url: str) -> Any:
    """The stress pool, with the library's defaults but the window and ``max_wait``."""
    from rotating_llm import KeyManager, Settings
    from rotating_llm.keys import APIKey
    from rotating_llm.secrets import EnvSecretStore

    keys = [
        APIKey(key_id=f"k{i}", model_name="m", provider="gemini", rpm=RPM, tpm=10**6)
        for i in range(KEYS)
    ]
    env = {f"API_KEY_K{i}": f"sk-stress-{i}" for i in range(KEYS)}
    settings = Settings(redis_url=url, window_seconds=WINDOW, max_wait=MAX_WAIT, probe_seconds=0)
    return KeyManager(keys, settings=settings, secret_store=EnvSecretStore(environ=env))


def _loop(km: Any, end: float, tally: Tally) -> None:
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            lease = km.acquire("m")
        except Exception as exc:  # a refusal, or anything else: counted by name
            tally.call(time.monotonic() - t0, type(exc).__name__, None)
            time.sleep(random.uniform(*BACKOFF))
            continue
        tally.call(time.monotonic() - t0, "lease", grant_of(lease))
        lease.complete(1)


async def _aloop(km: Any, end: float, tally: Tally) -> None:
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            lease = await km.aacquire("m")
        except Exception as exc:  # a refusal, or anything else: counted by name
            tally.call(time.monotonic() - t0, type(exc).__name__, None)
            await asyncio.sleep(random.uniform(*BACKOFF))
            continue
        tally.call(time.monotonic() - t0, "lease", grant_of(lease))
        await lease.acomplete(1)


def _sync_worker(url: str, control: str, wid: str, seconds: float) -> dict[str, Any]:
    km = _manager(url)
    tally = Tally()
    try:
        km.limiter.usage("m")  # registered and connected before the start
        wait_for_go(Path(control), wid)
        end = time.monotonic() + seconds
        runners = [threading.Thread(target=_loop, args=(km, end, tally)) for _ in range(THREADS)]
        for t in runners:
            t.start()
        for t in runners:
            t.join()
    finally:
        km.close()
    return tally.result()


def _async_worker(url: str, control: str, wid: str, seconds: float) -> dict[str, Any]:
    km = _manager(url)
    tally = Tally()
    km.limiter.usage("m")  # registered before the start

    async def run() -> None:
        try:
            await asyncio.to_thread(wait_for_go, Path(control), wid)
            end = time.monotonic() + seconds
            await asyncio.gather(*(_aloop(km, end, tally) for _ in range(TASKS)))
        finally:
            await km.aclose()

    asyncio.run(run())
    return tally.result()


def _redis_holds(url: str) -> tuple[int, dict[str, set[str]]]:
    """Redis's clock now (us), and per key the reservation ids its window holds."""
    import redis

    from rotating_llm import Settings
    from rotating_llm.limiter._schema import pool_base

    client = redis.Redis.from_url(url)
    try:
        sec, usec = client.time()
        now_us = int(sec) * 1_000_000 + int(usec)
        base = pool_base(Settings().key_prefix, "m")
        held: dict[str, set[str]] = {}
        for i in range(KEYS):
            kid = f"k{i}"
            members = client.zrangebyscore(f"{base}rpm:{kid}", now_us - WINDOW * 1e6, "+inf")
            held[kid] = {m.decode().rsplit(":", 1)[0] for m in members}
        return now_us, held
    finally:
        client.close()


def run_stress(seconds: float = 3 * WINDOW) -> dict[str, Any]:
    """Run the stress mix for ``seconds`` on a Redis of its own; returns its table row."""
    from rotating_llm.testing._redis import RedisServer

    server = RedisServer()
    server.start()
    try:
        with tempfile.TemporaryDirectory(prefix="chaos-stress-") as control:
            ctx = multiprocessing.get_context("spawn")
            n = SYNC_PROCS + ASYNC_PROCS
            with ProcessPoolExecutor(max_workers=n, mp_context=ctx) as pool:
                futures = [
                    pool.submit(_sync_worker, server.url, control, f"s{i}", seconds)
                    for i in range(SYNC_PROCS)
                ]
                futures += [
                    pool.submit(_async_worker, server.url, control, f"a{i}", seconds)
                    for i in range(ASYNC_PROCS)
                ]
                start_together(Path(control), n)
                results = [f.result(timeout=300) for f in futures]
        now_us, held = _redis_holds(server.url)
        km = _manager(server.url)
        try:
            report = km.health_check()
        finally:
            km.close()
    finally:
        with contextlib.suppress(Exception):
            server.stop()
    grants = [g for r in results for g in r["grants"]]
    errors: Counter[str] = Counter()
    for r in results:
        errors.update(r["errors"])
    granted = {g["rid"] for g in grants}
    recent = {g["rid"] for g in grants if g["at_us"] > now_us - WINDOW * 1e6}
    in_redis = set().union(*held.values())
    per_window = max_in_window(grants, WINDOW)
    return {
        "scenario": "stress",
        "limit": RPM,
        "max_per_key": max(per_window.values(), default=0),
        "grants": len(grants),
        "degraded": sum(g["embedded"] for g in grants),
        "errors": dict(errors),
        "max_call_s": round(max(r["longest"] for r in results), 3),
        "slowest": max(results, key=lambda r: r["longest"])["slowest"],
        "bound_s": MAX_WAIT + 1.0,  # the default store deadline
        "left_behind": len(in_redis - granted),
        "missing": len(recent - in_redis),
        "healthy": report["healthy"],
        "problems": report["problems"],
    }
