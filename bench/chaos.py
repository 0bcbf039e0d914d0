"""Chaos table: one pool, several processes, a Redis of its own that is slowed, paused,
killed, flushed or closed to scripts mid-run; per scenario, what the callers got.

    python -m bench.chaos [--workers 3] [--seconds 8] [--only stress,acl] [--json PATH]

Every scenario but ``stress`` starts a fresh ``redis-server`` on a free loopback port
(debug commands enabled for ``DEBUG SLEEP``), spawns ``--workers`` processes that each
acquire in a loop (``max_wait`` 0.5 s, a pause of ``PACE`` after each grant; the last
worker's callers are asyncio tasks) for ``--seconds`` (``sleep12``: at least 17),
completing every lease at once, and injects
its fault two seconds in (``acl``: the callers' Redis user may not run scripts or
functions). ``stress`` is the
stress mix of ``bench/_chaos_stress.py``: 8 processes of 20 threads and 8 of 50 asyncio
tasks on 3 keys of 7 requests per 5 s window, a healthy Redis, the default timings and
``local`` mode, for three windows. Columns:

- ``max/key``: the most grants of one key in any window (sliding, by the instants the
  store granted them; the limit is ``limit``), degraded ones too;
- ``degraded``: grants made on the in-process store while Redis was lost;
- ``errors``: what callers got instead of a lease, by type (``AllKeysExhaustedError`` is
  the pool being full, not an error of the library's making; ``StoreTimeoutError`` is
  one too, a decision Redis did not answer in time);
- ``max call``: the longest acquire against its bound (``max_wait`` + store deadline),
  and ``async``: the longest of the asyncio worker's;
- ``left behind``: reservations Redis holds that no caller was granted (0 wanted);
  ``missing``: grants callers got that Redis does not hold at the end (``stress``:
  those of the last window);
- ``health``: what ``health_check()`` says at the end, connected as the callers were.

Timings are printed here only; the counts are asserted by the tests
(``tests/integration_tests/test_chaos_table.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from bench._chaos_stress import Tally, grant_of, max_in_window, run_stress

__all__ = ["SCENARIOS", "main", "run_scenario"]

KEYS, RPM, WINDOW = 2, 30, 30.0
PACE = 0.3  # a worker's pause after each grant: the pool fills up over the run
MAX_WAIT, DEADLINE = 0.5, 1.0
FAULT_AT = 2.0
SCENARIOS = ("stress", "load", "sleep3", "sleep6", "sleep12", "pause", "kill", "flush", "acl")
#: the shortest run of a scenario (seconds): past its stall, with time to come back
AT_LEAST = {"sleep12": 17.0}
#: threads per worker in a scenario (the others: 1): a loaded machine, a healthy Redis
THREADS = {"load": 16}


def _settings(url: str) -> Any:
    from rotating_llm import Settings

    return Settings(
        redis_url=url,
        window_seconds=WINDOW,
        max_wait=MAX_WAIT,
        store_deadline=DEADLINE,
        heartbeat_seconds=0.2,
        store_retry_interval=0.2,
        probe_seconds=0,
    )


def _manager(url: str) -> Any:
    from rotating_llm import KeyManager
    from rotating_llm.keys import APIKey
    from rotating_llm.secrets import EnvSecretStore

    keys = [
        APIKey(key_id=f"k{i}", model_name="m", provider="gemini", rpm=RPM, tpm=10**6)
        for i in range(KEYS)
    ]
    env = {f"API_KEY_K{i}": f"sk-chaos-{i}" for i in range(KEYS)}
    return KeyManager(keys, settings=_settings(url), secret_store=EnvSecretStore(environ=env))


def _loop(km: Any, end: float, pace: float, tally: Tally) -> None:
    from rotating_llm import AllKeysExhaustedError

    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            lease = km.acquire("m")
        except AllKeysExhaustedError as exc:  # (a StoreTimeoutError is one too: by name)
            tally.call(time.monotonic() - t0, type(exc).__name__, None)
            time.sleep(0.05)
            continue
        except Exception as exc:  # the library's own store errors
            tally.call(time.monotonic() - t0, type(exc).__name__, None)
            time.sleep(0.05)
            continue
        tally.call(time.monotonic() - t0, "lease", grant_of(lease))
        lease.complete(1)
        time.sleep(pace)


async def _aloop(km: Any, end: float, pace: float, tally: Tally) -> None:
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            lease = await km.aacquire("m")
        except Exception as exc:  # a refusal or the library's own store errors, by name
            tally.call(time.monotonic() - t0, type(exc).__name__, None)
            await asyncio.sleep(0.05)
            continue
        tally.call(time.monotonic() - t0, "lease", grant_of(lease))
        await lease.acomplete(1)
        await asyncio.sleep(pace)


def _worker(
    url: str, start_at: float, seconds: float, threads: int = 1, aio: bool = False
) -> dict[str, Any]:
    """Acquire in a loop on ``threads`` threads (``aio``: as many asyncio tasks) from
    ``start_at`` (wall clock) for ``seconds``."""
    km = _manager(url)
    tally = Tally()
    try:
        while time.time() < start_at:
            time.sleep(0.01)
        end = time.monotonic() + seconds
        pace = PACE * threads  # the same demand, however many callers carry it
        if aio:
            asyncio.run(_tasks(km, end, pace, tally, threads))
        else:
            runners = [
                threading.Thread(target=_loop, args=(km, end, pace, tally)) for _ in range(threads)
            ]
            for t in runners:
                t.start()
            for t in runners:
                t.join()
        for _ in range(10):  # the process lives on: a recovery writes back before the end
            with contextlib.suppress(Exception):
                km.limiter.usage("m")
            time.sleep(0.2)
    finally:
        km.close()
    return {**tally.result(), "aio": aio}


async def _tasks(km: Any, end: float, pace: float, tally: Tally, n: int) -> None:
    try:
        await asyncio.gather(*(_aloop(km, end, pace, tally) for _ in range(n)))
    finally:  # this loop's connections (the manager is closed by the worker)
        await km.limiter.aflush()
        await km.store.primary.aclose()


def _fault(name: str, server: Any) -> None:
    import redis

    client = redis.Redis.from_url(server.url, socket_timeout=30)
    if name.startswith("sleep"):
        threading.Thread(
            target=client.execute_command, args=("DEBUG", "SLEEP", name[5:]), daemon=True
        ).start()
    elif name == "pause":
        client.execute_command("CLIENT", "PAUSE", "4000", "WRITE")
    elif name == "kill":
        server.stop()
        time.sleep(2.0)
        server.start()
    elif name == "flush":
        client.flushall()
    # "load": no fault, the callers are many threads per process; "acl": no fault, the
    # callers' Redis user may not run scripts


def _held(url: str) -> int:
    """Reservations Redis holds now, over the pool's keys."""
    km = _manager(url)
    try:
        return sum(u.rpm_count for u in km.limiter.usage("m").values())
    finally:
        km.close()


def _health(url: str) -> dict[str, Any]:
    """What ``health_check()`` says of the pool, as the workers connected to it."""
    km = _manager(url)
    try:
        report = km.health_check()
    finally:
        km.close()
    return {"healthy": report["healthy"], "problems": report["problems"]}


#: the ``acl`` scenario's Redis user: everything but scripting
ACL_USER, ACL_PASSWORD = "noscript", "pw-chaos-noscript"


def _no_scripting_user(url: str) -> str:
    """Add a Redis user that cannot run scripts or functions; returns its URL."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.execute_command(
            "ACL", "SETUSER", ACL_USER, "on", f">{ACL_PASSWORD}", "~*", "&*", "+@all",
            "-eval", "-evalsha", "-eval_ro", "-evalsha_ro", "-fcall", "-fcall_ro",
            "-function", "-script",
        )  # fmt: skip
    finally:
        client.close()
    return url.replace("redis://", f"redis://{ACL_USER}:{ACL_PASSWORD}@", 1)


def run_scenario(name: str, workers: int = 3, seconds: float = 8.0) -> dict[str, Any]:
    """Run one scenario; returns its row of the table (``stress``: its own shape, see
    ``bench/_chaos_stress.py``; ``workers`` and ``seconds`` apply to the others)."""
    from rotating_llm.testing._redis import RedisServer

    if name == "stress":
        return run_stress()
    seconds = max(seconds, AT_LEAST.get(name, 0.0))
    server = RedisServer(args=["--enable-debug-command", "yes"])
    server.start()
    try:
        url = _no_scripting_user(server.url) if name == "acl" else server.url
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            start_at = time.time() + 4.0  # spawned and ready by then
            threads = THREADS.get(name, 1)
            futures = [  # the last worker's callers are asyncio tasks
                pool.submit(_worker, url, start_at, seconds, threads, i == workers - 1)
                for i in range(workers)
            ]
            time.sleep(max(0.0, start_at - time.time()) + FAULT_AT)
            _fault(name, server)
            results = [f.result(timeout=120) for f in futures]
        time.sleep(0.5)
        held = _held(server.url)
        health = _health(url)
    finally:
        server.stop()
    per_key: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    degraded = 0
    all_grants = [g for r in results for g in r["grants"]]
    for r in results:
        for g in r["grants"]:
            per_key[g["key"]] += 1
            degraded += g["embedded"]
        errors.update(r["errors"])
    granted = sum(per_key.values())
    return {
        "scenario": name,
        "limit": RPM,
        "max_per_key": max(max_in_window(all_grants, WINDOW).values(), default=0),
        "grants": granted,
        "degraded": degraded,
        "errors": dict(errors),
        "max_call_s": round(max(r["longest"] for r in results), 3),
        "max_async_call_s": round(max(r["longest"] for r in results if r["aio"]), 3),
        "slowest": max(results, key=lambda r: r["longest"])["slowest"],
        "bound_s": MAX_WAIT + DEADLINE,
        "left_behind": max(0, held - granted),
        "missing": max(0, granted - held),
        **health,
    }


def _table(rows: list[dict[str, Any]]) -> str:
    head = f"{'scenario':9} {'max/key':>8} {'limit':>5} {'grants':>6} {'degraded':>8} "
    head += f"{'max call':>9} {'async':>6} {'bound':>6} {'left behind':>11} {'missing':>7} "
    head += f"{'health':>7}  errors"
    lines = [head]
    for r in rows:
        errs = ", ".join(f"{k} {v}" for k, v in sorted(r["errors"].items())) or "-"
        a = r.get("max_async_call_s")  # (stress: its async callers are in max call)
        async_s = "-" if a is None else f"{a:.2f}s"
        lines.append(
            f"{r['scenario']:9} {r['max_per_key']:>8} {r['limit']:>5} {r['grants']:>6} "
            f"{r['degraded']:>8} {r['max_call_s']:>8.2f}s {async_s:>6} {r['bound_s']:>5.1f}s "
            f"{r['left_behind']:>11} {r['missing']:>7} "
            f"{'ok' if r['healthy'] else 'failing':>7}  {errs}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run every scenario, print the table, write the rows as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.chaos")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--only", default=",".join(SCENARIOS))
    parser.add_argument("--json", type=Path, default=Path("bench/results/chaos.json"))
    args = parser.parse_args(argv)
    rows = [run_scenario(n, args.workers, args.seconds) for n in args.only.split(",")]
    print(_table(rows))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
