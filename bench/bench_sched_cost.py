"""The decision's cost with tiers and sticky keys unused, against the code before them.

Usage: python bench/bench_sched_cost.py [--redis-url URL] [--n 3000] [--rounds 3]
       [--baseline-ref cff1639] [--pools 3,1000] [--out FILE]

Issue 15 asks that the decision on an uncontended pool, with its scheduling features
unused, costs at most 1.2x today's. "Today's" is the library at ``--baseline-ref`` (the
main branch before tiers and sticky keys): its ``src`` is exported with ``git archive``
into a temporary directory, and the same measuring code below runs against it and
against this checkout, in child processes, alternately for ``--rounds`` rounds on the
same Redis (each version loads its own function library: the names carry a digest).

Per pool size, each child measures ``RedisLimiter.reserve`` (one acquire script call;
limits far above the load, so every call is a grant and nothing is settled):

- ``redis_us``: Redis time per decision (``INFO commandstats`` deltas of the script
  commands, which include every command the script runs);
- ``p50_us``/``p99_us``: the caller's latency of the decision.

This checkout also measures the features in use: a pool of two tiers whose lower tier
has room (``tiers``), and a decision with an affinity that holds (``affinity_held``).
The reported ratio is the median over rounds of each figure, current over baseline.
JSON on stdout (and in ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from _commandstats import command_stats, delta, script_us

BASELINE_REF = "cff1639"
TARGET_RATIO = 1.2
_ROOT = Path(__file__).resolve().parent.parent


def _measure(client: Any, call: Any, n: int) -> dict[str, float]:
    for _ in range(100):  # warm: scripts loaded, connections open
        call()
    times: list[float] = []
    before = command_stats(client)
    for _ in range(n):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    redis_us = script_us(delta(client, before))
    times.sort()
    return {
        "redis_us": redis_us,
        "p50_us": round(times[len(times) // 2] * 1e6, 1),
        "p99_us": round(times[int(len(times) * 0.99)] * 1e6, 1),
    }


def worker(redis_url: str, size: int, n: int, features: bool) -> dict[str, Any]:
    """Measure one library version (whichever ``rotating_llm`` is importable)."""
    import redis

    from rotating_llm import APIKey, KeyManager, Settings
    from rotating_llm.secrets import EnvSecretStore

    prefix = f"bsched{uuid.uuid4().hex[:8]}:"
    client = redis.Redis.from_url(redis_url)

    def manager(model: str, tiers: bool = False) -> Any:
        keys = [
            APIKey(
                key_id=f"{model}{i}",
                model_name=model,
                provider="x",
                rpm=10**9,
                tpm=10**12,
                **({"tier": i % 2} if tiers else {}),
            )
            for i in range(size)
        ]
        env = {f"API_KEY_{model.upper()}{i}": "s" for i in range(size)}
        settings = Settings(redis_url=redis_url, key_prefix=prefix, redact_logs=False)
        return KeyManager(keys, settings=settings, secret_store=EnvSecretStore(env))

    out: dict[str, Any] = {"keys": size}
    km = manager("u")
    out["unused"] = _measure(client, lambda: km.limiter.reserve("u", 10), n)
    km.close()
    if features:
        km = manager("t", tiers=True)
        out["tiers"] = _measure(client, lambda: km.limiter.reserve("t", 10), n)
        km.close()
        km = manager("a")
        out["affinity_held"] = _measure(
            client, lambda: km.limiter.reserve("a", 10, affinity="conv-1"), n
        )
        km.close()
    for key in client.scan_iter(f"{prefix}*", count=1000):
        client.delete(key)
    client.close()
    return out


def _child(src: Path, args: argparse.Namespace, size: int, features: bool) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    cmd = [sys.executable, __file__, "--worker", "--redis-url", args.redis_url,
           "--n", str(args.n), "--pools", str(size)]  # fmt: skip
    if features:
        cmd.append("--features")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, timeout=600)
    return dict(json.loads(done.stdout))


def _export(ref: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(_ROOT), "archive", ref, "src"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1/0"))
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pools", default="3,1000")
    parser.add_argument("--baseline-ref", default=BASELINE_REF)
    parser.add_argument("--out", default="")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--features", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        result = worker(args.redis_url, int(args.pools), args.n, args.features)
        print(json.dumps(result))
        return result
    sizes = [int(s) for s in args.pools.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        base_src = _export(args.baseline_ref, Path(tmp))
        runs: dict[int, dict[str, list[dict[str, Any]]]] = {
            s: {"baseline": [], "current": []} for s in sizes
        }
        for _ in range(args.rounds):
            for size in sizes:  # alternate, so load changes hit both alike
                runs[size]["baseline"].append(_child(base_src, args, size, False))
                runs[size]["current"].append(_child(_ROOT / "src", args, size, True))
    pools = []
    for size in sizes:

        def med(version: str, case: str, figure: str, size: int = size) -> float:
            return float(statistics.median(r[case][figure] for r in runs[size][version]))

        row: dict[str, Any] = {"keys": size}
        for figure in ("redis_us", "p50_us", "p99_us"):
            base = med("baseline", "unused", figure)
            row[f"baseline_{figure}"] = base
            for case in ("unused", "tiers", "affinity_held"):
                value = med("current", case, figure)
                row[f"{case}_{figure}"] = value
                row[f"{case}_{figure}_ratio"] = round(value / base, 3) if base else None
        pools.append(row)
    worst = max(max(p["unused_redis_us_ratio"], p["unused_p50_us_ratio"]) for p in pools)
    result = {
        "what": "acquire decision, features unused vs the baseline ref (medians of rounds)",
        "baseline_ref": args.baseline_ref,
        "n": args.n,
        "rounds": args.rounds,
        "pools": pools,
        "worst_unused_ratio": worst,
        "target_ratio": TARGET_RATIO,
        "met": worst <= TARGET_RATIO,
        "load_average": os.getloadavg(),
        "runs": {str(s): r for s, r in runs.items()},
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
