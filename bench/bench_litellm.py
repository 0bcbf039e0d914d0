"""Over-admission under many processes: this plugin against LiteLLM's usage-based-routing-v2.

Each scenario starts ``--processes`` processes sharing one Redis, each with its own
``litellm.Router`` on the same ``--deployments`` deployments (one API key each, ``rpm``
``--rpm``), in front of the provider simulator enforcing the same limits. Every process
fires ``--requests`` requests at once, without retries. Output (JSON on stdout), per
scenario: the pool's capacity, what the routers sent to the provider (admitted), what
the provider served, its 429s, and what the routers refused themselves. With
``--straddle-minute`` half of each burst goes just before a clock minute ends and half
``--straddle-gap`` seconds after it (past LiteLLM's default 5 s cooldowns): fixed
clock-minute counters admit up to twice the limit there.

    python bench/bench_litellm.py --processes 4 --deployments 3 --rpm 10 --requests 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import time
import uuid
import warnings
from collections import Counter
from typing import Any

SCENARIOS = {
    "rotating_llm": {"routing": "plugin"},
    "rotating_llm_proxy_callback": {"routing": "filter"},
    "usage-based-routing-v2": {"routing_strategy": "usage-based-routing-v2"},
    "usage-based-routing-v2+enforce_model_rate_limits": {
        "routing_strategy": "usage-based-routing-v2",
        "optional_pre_call_checks": ["enforce_model_rate_limits"],
    },
}


def _outcome(exc: BaseException) -> str:
    """The exception's type; whether the provider saw the request comes from its own stats."""
    return type(exc).__name__


def _sleep_until(t: float) -> None:
    delay = t - time.time()
    if delay > 0:
        time.sleep(delay)


def worker(spec: dict[str, Any], barrier: Any, out: Any) -> None:
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    warnings.simplefilter("ignore")
    import logging

    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "rotating_llm"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    from litellm import Router

    scenario = dict(SCENARIOS[spec["scenario"]])
    routing = scenario.pop("routing", None)
    kwargs: dict[str, Any] = {"model_list": spec["model_list"], "num_retries": 0, **scenario}
    if routing is None:
        kwargs["redis_url"] = spec["redis_url"]  # LiteLLM's own way to share usage
    router = Router(**kwargs)
    installed: Any = None
    ours = {
        "redis_url": spec["redis_url"],
        "key_prefix": spec["prefix"],
        "window_seconds": spec["window"],
        "max_wait": 0,
    }
    if routing == "plugin":
        from rotating_llm.litellm import install

        installed = install(router, **ours)
    elif routing == "filter":
        from rotating_llm.litellm import RotatingFilter

        installed = RotatingFilter(**ours)
        installed.register()

    async def main() -> Counter[str]:
        async def one(i: int) -> str:
            try:
                await router.acompletion(
                    model="pool", messages=[{"role": "user", "content": f"hello {i}"}]
                )
                return "ok"
            except Exception as exc:
                return _outcome(exc)

        barrier.wait(120)
        n = spec["requests"]
        if spec["straddle"]:  # half just before a clock minute ends, half just after
            boundary = (int(time.time() // 60) + 1) * 60.0
            if boundary - time.time() < 3:
                boundary += 60
            await asyncio.to_thread(_sleep_until, boundary - 1.5)
            first = await asyncio.gather(*(one(i) for i in range(n // 2)))
            await asyncio.to_thread(_sleep_until, boundary + spec["straddle_gap"])
            second = await asyncio.gather(*(one(i) for i in range(n // 2, n)))
            counts = Counter(first + second)
        else:
            counts = Counter(await asyncio.gather(*(one(i) for i in range(n))))
        if installed is not None:
            settler = installed if routing == "filter" else installed.settler
            deadline = time.monotonic() + 10
            while settler.pending and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await installed.aclose()
        return counts

    out.put(dict(asyncio.run(main())))


def run_scenario(name: str, args: argparse.Namespace, redis_url: str) -> dict[str, Any]:
    from rotating_llm.testing import FakeProvider

    with FakeProvider(rpm=args.rpm, window=args.window, process=True) as fp:
        run = uuid.uuid4().hex[:8]
        model_list = [
            {
                "model_name": "pool",
                "litellm_params": {
                    "model": "openai/gpt-fake",
                    "api_key": f"sk-bench-{run}-{i}",
                    "api_base": fp.openai_url,
                    "rpm": args.rpm,
                },
                "model_info": {"id": f"bench-{run}-{i}"},
            }
            for i in range(args.deployments)
        ]
        spec = {
            "scenario": name,
            "model_list": model_list,
            "redis_url": redis_url,
            "prefix": f"bench-{run}:",
            "window": args.window,
            "requests": args.requests,
            "straddle": args.straddle_minute,
            "straddle_gap": args.straddle_gap,
        }
        ctx = multiprocessing.get_context("spawn")
        barrier = ctx.Barrier(args.processes)
        out = ctx.Queue()
        procs = [
            ctx.Process(target=worker, args=(spec, barrier, out), daemon=True)
            for _ in range(args.processes)
        ]
        started = time.monotonic()
        for p in procs:
            p.start()
        totals: Counter[str] = Counter()
        for _ in procs:
            totals.update(out.get(timeout=300))
        for p in procs:
            p.join(30)
        elapsed = time.monotonic() - started
        stats = fp.stats().values()
        capacity = args.deployments * args.rpm
        admitted = sum(s.requests for s in stats)
        return {
            "scenario": name,
            "capacity": capacity,
            "attempted": args.processes * args.requests,
            "admitted": admitted,
            "over_admission": max(0, admitted - capacity),
            "served": sum(s.served for s in stats),
            "simulator_429s": sum(s.rate_limited for s in stats),
            "router_refusals": args.processes * args.requests - admitted,
            "outcomes": dict(totals),
            "seconds": round(elapsed, 2),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--deployments", type=int, default=3)
    parser.add_argument("--rpm", type=int, default=10)
    parser.add_argument("--requests", type=int, default=30, help="requests per process")
    parser.add_argument("--window", type=float, default=60.0, help="limit window (seconds)")
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    parser.add_argument(
        "--straddle-minute",
        action="store_true",
        help="fire half of each burst just before a clock minute ends and half just after",
    )
    parser.add_argument(
        "--straddle-gap",
        type=float,
        default=6.0,
        help="seconds after the minute for the second half (past LiteLLM's 5 s cooldowns)",
    )
    args = parser.parse_args(argv)
    results = [run_scenario(name, args, args.redis_url) for name in args.scenario or SCENARIOS]
    json.dump(
        {
            "benchmark": "litellm_multiprocess_admission",
            "processes": args.processes,
            "deployments": args.deployments,
            "rpm_per_deployment": args.rpm,
            "window_seconds": args.window,
            "straddle_minute": args.straddle_minute,
            "straddle_gap_seconds": args.straddle_gap if args.straddle_minute else None,
            "results": results,
        },
        sys.stdout,
        indent=2,
    )
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
