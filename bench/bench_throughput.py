"""Throughput that scales: decisions/s against PINGs/s at 1, 2, 4, 8 processes, same run.

Decisions (``acquire`` + ``complete``) from 1, 2, 4 and 8 processes on one pool of one
Redis, beside the same processes looping ``client.ping()``; then the largest process count
over 3 pools on that one Redis and on a local 3-master Redis Cluster (each pool lives on
one hash slot, so the cluster spreads pools, not one pool). Every run also records the
CPU the Redis server(s) used per second, and the JSON carries the machine's cores and
load: on a machine with fewer cores than servers + clients, the CPUs are the limit, not
Redis. Needs a Redis (``--redis-url``, default ``$REDIS_URL``) and ``redis-server`` +
``redis-cli`` for the cluster.

    python bench/bench_throughput.py [--quick] [--out bench/results/throughput.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

#: Issue 14's targets: decisions/s at 8 processes against ``client.ping()``'s; cluster with
#: 3 pools against one node with the same 3 pools.
TARGET_RATIO_TO_PING = 0.6
TARGET_CLUSTER_VS_NODE = 2.0


def _limit(cores: int, procs: int, masters: int, node3: dict[str, Any]) -> str:
    """One sentence: what bounds the figures on this machine."""
    redis_cpu = node3.get("redis_cpu_cores")
    busy = f"one Redis used {redis_cpu:.2f} of a core" if redis_cpu is not None else ""
    if cores < procs + masters:
        return (
            f"{cores} cores shared by {procs} client processes and {masters} Redis servers "
            f"(the cluster) or 1 (one node): the CPUs are the limit, not Redis"
            + (f"; at {procs} processes {busy}" if busy else "")
            + ". A cluster can only beat one node when each master has a core of its own."
        )
    return f"{cores} cores; " + (busy or "Redis CPU not measured")


def run(redis_url: str, quick: bool, log: Any = print) -> dict[str, Any]:
    """The whole comparison as one JSON-ready dict."""
    from _throughput import decisions_per_second
    from rotating_llm.testing import RedisCluster as RedisClusterProcess

    procs_list = (1, 4) if quick else (1, 2, 4, 8)
    duration = 2.0 if quick else 5.0
    cores = os.cpu_count() or 1
    out: dict[str, Any] = {
        "pool_keys": 100,
        "seconds_per_run": duration,
        "cores": cores,
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "redis": {},
        "ping": {},
    }
    for procs in procs_list:
        log(f"throughput: one Redis, {procs} processes")
        dec = decisions_per_second(redis_url, procs, duration=duration)
        ping = decisions_per_second(redis_url, procs, duration=duration, op="ping")
        dec["ratio_to_ping"] = round(dec["decisions_per_s"] / ping["decisions_per_s"], 3)
        out["redis"][str(procs)], out["ping"][str(procs)] = dec, ping
    top = max(procs_list)
    out["ratio_to_ping_at_top"] = {
        "processes": top,
        "value": out["redis"][str(top)]["ratio_to_ping"],
        "target": TARGET_RATIO_TO_PING,
        "met": out["redis"][str(top)]["ratio_to_ping"] >= TARGET_RATIO_TO_PING,
    }
    log(f"throughput: one Redis, {top} processes, 3 pools")
    node3 = decisions_per_second(redis_url, top, duration=duration, pools=3)
    out["redis_3_pools"] = node3
    try:
        cluster = RedisClusterProcess()
        cluster.start()
    except Exception as exc:  # no redis-server binary, ports, ...
        out["cluster_error"] = f"{type(exc).__name__}: {exc}"
        out["limited_by"] = _limit(cores, top, 3, node3)
        return out
    nodes = [f"redis://127.0.0.1:{port}/0" for port in cluster.ports]
    try:
        out["cluster"] = {"masters": len(cluster.ports)}
        for procs in procs_list:
            log(f"throughput: Redis Cluster, {procs} processes")
            out["cluster"][str(procs)] = decisions_per_second(
                cluster.url, procs, cluster=True, duration=duration, node_urls=nodes
            )
        log(f"throughput: Redis Cluster, {top} processes, 3 pools")
        c3 = decisions_per_second(
            cluster.url, top, cluster=True, duration=duration, pools=3, node_urls=nodes
        )
    finally:
        cluster.stop()
    out["cluster_3_pools"] = c3
    ratio = round(c3["decisions_per_s"] / node3["decisions_per_s"], 3)
    out["cluster_3_pools_vs_node"] = {
        "value": ratio,
        "target": TARGET_CLUSTER_VS_NODE,
        "met": ratio >= TARGET_CLUSTER_VS_NODE,
        "cores_allow": cores >= top + len(cluster.ports),
    }
    out["limited_by"] = _limit(cores, top, len(cluster.ports), node3)
    out["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--quick", action="store_true", help="1 and 4 processes, 2 s each")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    opts = parser.parse_args()
    result = run(opts.redis_url, opts.quick, log=lambda m: print(m, file=sys.stderr))
    text = json.dumps(result, indent=2)
    print(text)
    if opts.out is not None:
        opts.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
