"""Every benchmark of rotating-llm in one run, side by side: JSON + PNG.

    .venv/bin/python -m bench                       # or: .venv/bin/python bench/run.py
    .venv/bin/python -m bench --quick               # smaller counts (about 3 minutes)
    .venv/bin/python -m bench --only latency,goodput

Sections (``--only`` names): ``latency`` (decision latency vs a bare PING, pools of 3 /
100 / 1,000 keys), ``admission`` (over-admission with 1/4/8 processes vs LiteLLM's
usage-based-routing-v2), ``goodput`` (served vs capacity and provider 429s under 3x
demand vs LiteLLM's router and round robin), ``overhead`` (``RotatingChatModel`` vs
``ChatGoogleGenerativeAI`` directly), ``faces`` (the async and sync faces against what
they wrap: ``ainvoke``/``invoke``, LiteLLM's ``Router``; a 1 ms ticker's lag beside each;
also ``bench/results/faces.json``) and ``throughput`` (decisions/s from 1/4/8
processes, one Redis vs a local Redis Cluster). Writes ``bench/results/results.json``
and ``bench/results/benchmarks.png``; see ``bench/README.md``. Needs a Redis
(``--redis-url``, default ``REDIS_URL`` else ``redis://127.0.0.1:6379/0``), and
``redis-server`` + ``redis-cli`` for the cluster. Every target is recorded with whether
it was met; nothing is tuned to meet it.
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network fetch

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:  # the scripts next to this one, as top-level modules
    sys.path.insert(0, str(BENCH_DIR))

SECTIONS = ("latency", "admission", "goodput", "overhead", "faces", "throughput")
ADMISSION_SCENARIOS = (
    "rotating_llm",
    "usage-based-routing-v2",
    "usage-based-routing-v2+enforce_model_rate_limits",
)

TARGETS = {
    "zero_over_admission": "over-admission = 0 at every process count",
    "goodput": "goodput >= 97% of capacity with 0 provider 429s",
    "decision_p50_vs_ping": "decision (acquire) p50 <= 2x PING p50",
    "acquire_complete_p50_vs_ping": "acquire+complete p50 <= 2x PING p50 (issue 2 asks 3x)",
    "import_vs_redis_pydantic": "from rotating_llm import get_key_manager, APIKey <= 1.3x "
    "import redis, pydantic; no framework loaded",
    "keys_1000_vs_3": "acquire+complete p50 at 1,000 keys <= 2x at 3 keys",
    "wrapper_overhead": "RotatingChatModel overhead p50 < 1 ms per call",
    "ainvoke_p50_within_1ms": "RotatingChatModel.ainvoke p50 within 1 ms of "
    "ChatGoogleGenerativeAI.ainvoke",
    "ainvoke_ticker_lag_no_worse": "1 ms ticker p99 lag beside ainvoke no worse than beside "
    "the direct model (1 ms allowance)",
    "invoke_p50_within_1ms": "RotatingChatModel.invoke p50 within 1 ms of "
    "ChatGoogleGenerativeAI.invoke",
    "litellm_p50_within_1ms": "installed Router acompletion p50 within 1 ms of a plain Router",
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def target(name: str, value: Any, met: bool, **extra: Any) -> dict[str, Any]:
    return {"target": TARGETS[name], "value": value, "met": bool(met), **extra}


# -- sections --------------------------------------------------------------------------


def section_latency(redis_url: str, quick: bool) -> dict[str, Any]:
    import bench_core

    n = 500 if quick else 2000
    pools: dict[str, Any] = {}
    for size in (3, 100, 1000):
        log(f"latency: {size} keys, {n} decisions")
        pools[str(size)] = bench_core.run_processes(redis_url, size, n, 1)
    ratio = round(
        pools["1000"]["acquire_complete_p50_us"] / pools["3"]["acquire_complete_p50_us"], 2
    )
    worst_acq = max(p["acquire_p50_vs_ping"] for p in pools.values())
    worst_both = max(p["acquire_complete_p50_vs_ping"] for p in pools.values())
    direct = {
        "acquire_vs_ping_direct": max(p["acquire_p50_vs_ping_direct"] for p in pools.values()),
        "acquire_complete_vs_ping_direct": max(
            p["acquire_complete_p50_vs_ping_direct"] for p in pools.values()
        ),
    }
    log("latency: import times")
    imports = bench_core.import_times()
    imp = imports["import_vs_redis_pydantic"]
    return {
        "decisions_per_pool": n,
        "processes": 1,
        "pools": pools,
        "keys_1000_vs_3": ratio,
        "worst_vs_ping_direct": direct,
        "imports": imports,
        "targets": {
            "decision_p50_vs_ping": target(
                "decision_p50_vs_ping",
                worst_acq,
                worst_acq <= 2.0,
                note="worst pool size; vs a PING sent the library's way: "
                f"{direct['acquire_vs_ping_direct']}x",
            ),
            "acquire_complete_p50_vs_ping": target(
                "acquire_complete_p50_vs_ping",
                worst_both,
                worst_both <= 2.0,
                note="worst pool size; vs a PING sent the library's way: "
                f"{direct['acquire_complete_vs_ping_direct']}x",
            ),
            "keys_1000_vs_3": target("keys_1000_vs_3", ratio, ratio <= 2.0),
            "import_vs_redis_pydantic": target(
                "import_vs_redis_pydantic",
                imp,
                imp <= 1.3 and imports["frameworks_loaded"] == "[]",
                note=f"frameworks loaded: {imports['frameworks_loaded']}",
            ),
        },
    }


def section_admission(redis_url: str, quick: bool) -> dict[str, Any]:
    import bench_litellm

    procs_list = (1, 4) if quick else (1, 4, 8)
    deployments, rpm = 3, 10
    per_process = 30 if quick else 60
    runs: dict[str, dict[str, Any]] = {s: {} for s in ADMISSION_SCENARIOS}
    for procs in procs_list:
        args = argparse.Namespace(
            processes=procs,
            deployments=deployments,
            rpm=rpm,
            requests=per_process,
            window=60.0,
            straddle_minute=False,
            straddle_gap=6.0,
        )
        for scenario in ADMISSION_SCENARIOS:
            log(f"admission: {scenario}, {procs} processes x {per_process} requests")
            runs[scenario][str(procs)] = bench_litellm.run_scenario(scenario, args, redis_url)
    ours = [r["over_admission"] for r in runs["rotating_llm"].values()]
    worst = {name: max(r["over_admission"] for r in by.values()) for name, by in runs.items()}
    return {
        "deployments": deployments,
        "rpm_per_deployment": rpm,
        "capacity": deployments * rpm,
        "requests_per_process": per_process,
        "process_counts": list(procs_list),
        "scenarios": runs,
        "worst_over_admission": worst,
        "targets": {
            "zero_over_admission": target(
                "zero_over_admission",
                {p: r["over_admission"] for p, r in runs["rotating_llm"].items()},
                all(v == 0 for v in ours),
            )
        },
    }


def section_goodput(redis_url: str, quick: bool) -> dict[str, Any]:
    from _goodput import run_goodput

    windows = 2 if quick else 6
    log(f"goodput: 3 systems x {windows} windows of 5 s at 3x capacity")
    out = run_goodput(redis_url, windows=windows)
    for system in out["systems"].values():  # the same bar for every system, for the table
        system["meets_goodput_target"] = (
            system["goodput_vs_capacity"] >= 0.97 and system["provider_429s"] == 0
        )
    ours = out["systems"]["rotating_llm"]
    met = ours["goodput_vs_capacity"] >= 0.97 and ours["provider_429s"] == 0
    out["targets"] = {
        "goodput": target(
            "goodput",
            {"goodput": ours["goodput_vs_capacity"], "provider_429s": ours["provider_429s"]},
            met,
        )
    }
    return out


def section_overhead(redis_url: str, quick: bool) -> dict[str, Any]:
    from _overhead import run_overhead

    calls = 100 if quick else 400
    log(f"overhead: {calls} calls each, alternating")
    out = run_overhead(redis_url, calls=calls)
    out["targets"] = {
        "wrapper_overhead": target(
            "wrapper_overhead", out["overhead_p50_ms"], out["overhead_p50_ms"] < 1.0
        )
    }
    return out


def section_faces(redis_url: str, quick: bool) -> dict[str, Any]:
    """The faces against what they wrap (``bench_faces``); also written to faces.json."""
    import bench_faces

    calls = 100 if quick else 400
    log(f"faces: {calls} calls each, LangChain async and sync, LiteLLM")
    out = bench_faces.run_faces(redis_url, calls=calls)
    (BENCH_DIR / "results").mkdir(parents=True, exist_ok=True)
    (BENCH_DIR / "results" / "faces.json").write_text(json.dumps(out, indent=2) + "\n")
    out["targets"] = {
        name: target(name, t["value"], t["met"]) for name, t in out["face_targets"].items()
    }
    return out


def section_throughput(redis_url: str, quick: bool) -> dict[str, Any]:
    """Decisions/s against PINGs/s at the same process counts; a 3-master cluster with
    3 pools against one node with the same 3 pools (``bench_throughput.py``)."""
    from bench_throughput import run

    out = run(redis_url, quick, log=log)
    (BENCH_DIR / "results" / "throughput.json").write_text(json.dumps(out, indent=2) + "\n")
    return out


RUNNERS = {
    "latency": section_latency,
    "admission": section_admission,
    "goodput": section_goodput,
    "overhead": section_overhead,
    "faces": section_faces,
    "throughput": section_throughput,
}


# -- machine facts ---------------------------------------------------------------------


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist in ("rotating-llm", "redis", "litellm", "langchain-core", "langchain-google-genai"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _redis_version(redis_url: str) -> str:
    import redis

    try:
        client = redis.Redis.from_url(redis_url, socket_connect_timeout=2)
        info = client.info("server")
        client.close()
        return str(info.get("redis_version"))
    except Exception as exc:
        return f"unreachable ({type(exc).__name__})"


def machine_facts() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.machine(),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }


# -- main ------------------------------------------------------------------------------


def summary_table(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, section in results["sections"].items():
        for key, t in (section.get("targets") or {}).items():
            rows.append({"section": name, "name": key, **t})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--quick", action="store_true", help="smaller counts (a smoke run)")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--out-dir", default=str(BENCH_DIR / "results"))
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")

    started = time.time()
    results: dict[str, Any] = {
        "benchmark": "rotating-llm",
        "command": "python -m bench"
        + (" --quick" if args.quick else "")
        + ("" if args.only == ",".join(SECTIONS) else f" --only {args.only}"),
        "quick": args.quick,
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "machine": machine_facts(),
        "versions": _versions(),
        "redis": {
            "url": args.redis_url.split("@")[-1],
            "version": _redis_version(args.redis_url),
        },
        "sections": {},
    }
    for name in SECTIONS:
        if name not in chosen:
            continue
        t0 = time.monotonic()
        try:
            results["sections"][name] = RUNNERS[name](args.redis_url, args.quick)
        except Exception as exc:
            log(f"{name} failed: {type(exc).__name__}: {exc}")
            results["sections"][name] = {"error": f"{type(exc).__name__}: {exc}"}
        results["sections"][name]["seconds"] = round(time.monotonic() - t0, 1)
    results["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    results["seconds"] = round(time.time() - started, 1)
    results["targets"] = summary_table(results)

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {out_dir / 'results.json'}")
    if not args.no_plot:
        from _plot import plot

        plot(results, out_dir / "benchmarks.png")
        log(f"wrote {out_dir / 'benchmarks.png'}")
    for row in results["targets"]:
        mark = "MET " if row["met"] else "MISS"
        log(f"{mark} {row['section']}: {row['target']} -> {row['value']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
