"""Capacity of rotating_llm.testing.FakeProvider: requests/s and concurrency reached.

Drives the simulator with aiohttp clients (``--load-procs`` processes, together
``--concurrency`` connections, each looping requests for ``--duration`` seconds)
against the thread mode and the process mode, and prints JSON to stdout::

    .venv/bin/python bench/bench_fake_provider.py --duration 5 --concurrency 200

The load generator competes for the same cores, so the numbers are a lower bound
on what the simulator can serve.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import sys
import time
from typing import Any

GEMINI_BODY = json.dumps({"contents": [{"role": "user", "parts": [{"text": "Hello there"}]}]})
OPENAI_BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "Hello there"}]})


async def _load(base: str, concurrency: int, duration: float, start_at: float) -> dict[str, int]:
    import aiohttp

    counts = {"ok": 0, "errors": 0, "in_flight": 0, "peak_in_flight": 0}
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        while time.time() < start_at:
            await asyncio.sleep(0.01)
        deadline = time.time() + duration

        async def worker(i: int) -> None:
            key = f"bench-key-{i % 20:04d}"
            gem = i % 2 == 0
            url = (
                f"{base}/v1beta/models/gemini-2.5-flash:generateContent"
                if gem
                else f"{base}/v1/chat/completions"
            )
            headers = (
                {"x-goog-api-key": key, "Content-Type": "application/json"}
                if gem
                else {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
            )
            body = GEMINI_BODY if gem else OPENAI_BODY
            while time.time() < deadline:
                counts["in_flight"] += 1
                counts["peak_in_flight"] = max(counts["peak_in_flight"], counts["in_flight"])
                try:
                    async with session.post(url, data=body, headers=headers) as resp:
                        await resp.read()
                        counts["ok" if resp.status == 200 else "errors"] += 1
                except aiohttp.ClientError:
                    counts["errors"] += 1
                finally:
                    counts["in_flight"] -= 1

        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return counts


def _load_proc(base: str, concurrency: int, duration: float, start_at: float, q: Any) -> None:
    q.put(asyncio.run(_load(base, concurrency, duration, start_at)))


def _cpu_seconds(fp: Any) -> float:
    """CPU seconds used so far by the provider's child process (0.0 in thread mode)."""
    proc = getattr(fp, "_proc", None)
    if proc is None or proc.pid is None:
        return 0.0
    try:
        with open(f"/proc/{proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one load test against a fresh FakeProvider.

    ``mode``: ``thread`` / ``process`` (load from separate processes) or
    ``thread-inproc`` (load from this process, sharing the server thread's GIL).
    """
    from rotating_llm.testing import FakeProvider

    process = mode == "process"
    with FakeProvider(process=process) as fp:
        if mode == "thread-inproc":
            result = asyncio.run(_load(fp.url, args.concurrency, args.duration, time.time()))
            return {
                "mode": mode,
                "concurrency": args.concurrency,
                "load_processes": 0,
                "duration_s": args.duration,
                "requests_ok": result["ok"],
                "errors": result["errors"],
                "requests_per_s": round(result["ok"] / args.duration, 1),
                "client_peak_concurrent_requests": result["peak_in_flight"],
                "server_handled": fp.server_stats()["handled"],
            }
        procs = max(args.load_procs, 1)
        per = [
            args.concurrency // procs + (1 if i < args.concurrency % procs else 0)
            for i in range(procs)
        ]
        ctx = multiprocessing.get_context("spawn")
        q = ctx.Queue()
        start_at = time.time() + 2.0  # let every load process import aiohttp first
        workers = [
            ctx.Process(target=_load_proc, args=(fp.url, n, args.duration, start_at, q))
            for n in per
        ]
        for w in workers:
            w.start()
        cpu_before = _cpu_seconds(fp)
        results = [q.get() for _ in workers]
        cpu_used = _cpu_seconds(fp) - cpu_before
        for w in workers:
            w.join()
        server = fp.server_stats()
    ok = sum(r["ok"] for r in results)
    errors = sum(r["errors"] for r in results)
    return {
        "mode": mode,
        "concurrency": args.concurrency,
        "load_processes": procs,
        "duration_s": args.duration,
        "requests_ok": ok,
        "errors": errors,
        "requests_per_s": round(ok / args.duration, 1),
        "client_peak_concurrent_requests": sum(r["peak_in_flight"] for r in results),
        "server_handled": server["handled"],
        "server_cpu_s": round(cpu_used, 2) if process else None,
        "server_requests_per_cpu_s": round(ok / cpu_used, 1) if process and cpu_used else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--load-procs", type=int, default=2)
    parser.add_argument("--modes", default="thread,process,thread-inproc")
    args = parser.parse_args()
    runs = []
    for mode in args.modes.split(","):
        runs.append(measure(mode.strip(), args))
    report = {
        "benchmark": "fake_provider_capacity",
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "note": "load runs in separate processes in both modes; server_requests_per_cpu_s "
        "is the process-mode server's throughput per core second it used",
        "runs": runs,
    }
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
