"""Decision latency of the core against a bare Redis PING, in the same run.

Usage: python bench/bench_core.py [--redis-url URL] [--n 2000] [--out bench/results/core.json]

Measures, for pools of 3, 100 and 1,000 keys, p50/p99 of ``acquire`` alone and of
``acquire`` + ``complete``, each beside a PING from the same client, in 1 and 4
processes; and the import time of ``from rotating_llm import get_key_manager, APIKey``
against ``import redis, pydantic``. JSON on stdout (and in --out).

Two baselines, both in the same loop: ``ping`` is ``client.ping()`` on the same redis-py
client (the targets' baseline: it includes the client's pool checkout and per-command
hooks), ``ping_direct`` is a PING written on one connection of its own, the way the
library sends its own calls (``Store._direct``). Ratios against both are reported.

``complete`` returns once its settle call is written to Redis; the reply is read later.
Each iteration then waits for that reply (untimed) so the next PING and acquire start on
an idle Redis, and reports it as ``complete_applied`` (complete until Redis applied it).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

SAMPLES = ("ping", "ping_direct", "acquire", "acquire_complete", "complete_applied")
TARGETS = {
    "acquire_p50_vs_ping": 2.0,
    "acquire_complete_p50_vs_ping": 3.0,
    "keys_1000_vs_3": 2.0,
    "import_vs_redis_pydantic": 1.3,
}


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def measure(redis_url: str, pool_size: int, n: int, start_at: float = 0.0) -> dict[str, Any]:
    from rotating_llm import APIKey, KeyManager, Settings
    from rotating_llm.secrets import EnvSecretStore

    keys = [
        APIKey(key_id=f"b{i}", model_name="bench", provider="x", rpm=10**8, tpm=10**12)
        for i in range(pool_size)
    ]
    env = {f"API_KEY_B{i}": f"bench-secret-{i}" for i in range(pool_size)}
    prefix = f"bench{uuid.uuid4().hex[:8]}:"
    km = KeyManager(
        keys,
        settings=Settings(redis_url=redis_url, key_prefix=prefix, redact_logs=False),
        secret_store=EnvSecretStore(env),
    )
    client = km.store.primary.sync
    pool = client.connection_pool
    raw = pool.connection_class(**pool.connection_kwargs)  # one connection, no pool checkout
    km.acquire("bench", 1).complete(1)  # register, load scripts, warm connections
    for _ in range(50):
        client.ping()
        raw.send_command("PING")
        raw.read_response()
        km.acquire("bench", 1).complete(1)
    while time.time() < start_at:
        time.sleep(0.001)
    ping, direct, acq, both, applied = [], [], [], [], []
    t_begin = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        raw.send_command("PING")
        raw.read_response()
        t0 = time.perf_counter()
        client.ping()
        t1 = time.perf_counter()
        lease = km.acquire("bench", 10)
        t2 = time.perf_counter()
        lease.complete(7)  # returns once written; Redis's reply is read later
        t3 = time.perf_counter()
        km.limiter.flush()  # read that reply: every operation starts on an idle Redis
        t4 = time.perf_counter()
        direct.append(t0 - t)
        ping.append(t1 - t0)
        acq.append(t2 - t1)
        both.append(t3 - t1)
        applied.append(t4 - t2)
    elapsed = time.perf_counter() - t_begin
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    raw.disconnect()
    km.close()
    return {
        "ping": ping,
        "ping_direct": direct,
        "acquire": acq,
        "acquire_complete": both,
        "complete_applied": applied,
        "decisions_per_s": n / elapsed,
    }


def summarise(samples: dict[str, list[float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in SAMPLES:
        out[f"{name}_p50_us"] = round(statistics.median(samples[name]) * 1e6, 1)
        out[f"{name}_p99_us"] = round(pct(samples[name], 0.99) * 1e6, 1)
    for what in ("acquire", "acquire_complete"):
        # the targets' baseline: PING from the same redis-py client (pool checkout included)
        out[f"{what}_p50_vs_ping"] = round(out[f"{what}_p50_us"] / out["ping_p50_us"], 2)
        # for reference: PING written on one connection, as the library sends its calls
        out[f"{what}_p50_vs_ping_direct"] = round(
            out[f"{what}_p50_us"] / out["ping_direct_p50_us"], 2
        )
    return out


def run_processes(redis_url: str, pool_size: int, n: int, procs: int) -> dict[str, Any]:
    if procs == 1:
        raw = measure(redis_url, pool_size, n)
        merged = {k: raw[k] for k in SAMPLES}
        rate = raw["decisions_per_s"]
    else:
        ctx = multiprocessing.get_context("spawn")
        start_at = time.time() + 5
        with ctx.Pool(procs) as pool:
            results = pool.starmap(measure, [(redis_url, pool_size, n, start_at)] * procs)
        merged = {k: [v for r in results for v in r[k]] for k in SAMPLES}
        rate = sum(r["decisions_per_s"] for r in results)
    return {**summarise(merged), "decisions_per_s_total": round(rate, 1)}


def import_times(repeat: int = 7) -> dict[str, Any]:
    def timed(stmt: str) -> float:
        code = f"import time; t=time.perf_counter(); {stmt}; print(time.perf_counter()-t)"
        runs = [
            float(
                subprocess.run(
                    [sys.executable, "-c", code], capture_output=True, text=True, check=True
                ).stdout
            )
            for _ in range(repeat)
        ]
        return statistics.median(runs)

    # byte-compile the package first, as an install does: an editable checkout under
    # PYTHONDONTWRITEBYTECODE would otherwise compile it from source on every run
    import compileall

    import rotating_llm

    compileall.compile_dir(str(Path(rotating_llm.__file__).parent), quiet=1)
    base = timed("import redis, pydantic")
    ours = timed("from rotating_llm import get_key_manager, APIKey")
    # for reference: everything a first manager needs (redis-py, the store, the limiter)
    core = timed("from rotating_llm.keys.manager import KeyManager")
    probe = (
        "import sys; from rotating_llm import get_key_manager, APIKey; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'langchain_core','litellm','fakeredis','lupa'}))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    return {
        "redis_pydantic_s": round(base, 4),
        "rotating_llm_s": round(ours, 4),
        "import_vs_redis_pydantic": round(ours / base, 2),
        "manager_module_s": round(core, 4),
        "manager_module_vs_redis_pydantic": round(core / base, 2),
        "frameworks_loaded": loaded,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--sizes", default="3,100,1000")
    parser.add_argument("--procs", default="1,4")
    parser.add_argument("--out", default="bench/results/core.json")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    result: dict[str, Any] = {
        "redis_url": args.redis_url.split("@")[-1],
        "n": args.n,
        "cpus": os.cpu_count(),
        "runs": {},
    }
    for procs in (int(p) for p in args.procs.split(",")):
        for size in sizes:
            result["runs"][f"{size}_keys_{procs}_proc"] = run_processes(
                args.redis_url, size, args.n, procs
            )
    runs = result["runs"]
    if "3_keys_1_proc" in runs and "1000_keys_1_proc" in runs:
        result["keys_1000_vs_3"] = round(
            runs["1000_keys_1_proc"]["acquire_complete_p50_us"]
            / runs["3_keys_1_proc"]["acquire_complete_p50_us"],
            2,
        )
    result["imports"] = import_times()
    checks = {
        "acquire_p50_vs_ping": max(
            r["acquire_p50_vs_ping"] for k, r in runs.items() if "_1_proc" in k
        ),
        "acquire_complete_p50_vs_ping": max(
            r["acquire_complete_p50_vs_ping"] for k, r in runs.items() if "_1_proc" in k
        ),
        "keys_1000_vs_3": result.get("keys_1000_vs_3"),
        "import_vs_redis_pydantic": result["imports"]["import_vs_redis_pydantic"],
    }
    result["targets"] = {
        k: {"value": v, "target": TARGETS[k], "met": v is not None and v <= TARGETS[k]}
        for k, v in checks.items()
    }
    text = json.dumps(result, indent=2)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
