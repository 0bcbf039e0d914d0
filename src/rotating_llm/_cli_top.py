"""``rotating-llm top``: a live table of every pool and key, read from the shared store.

What the store keeps is shown: state, usage of each limit, the prober's last verdict,
per pool the long-lived processes whose heartbeat has not expired, and the requests
served, the provider's 429s (per key) and the refusals callers saw (per pool) of every
process: per minute over the last 60 s, and counted over the last 5 minutes.
Limits learned from the provider are shown with the file's value (the key's, then its
quota group's). Per pool, the queue shows how many callers wait for capacity in it
(their tickets, from every process).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["configure_parser", "run", "snapshot"]

_KEY_RATES = ("served", "rate_limited")


def configure_parser(top: argparse.ArgumentParser) -> None:
    """Options of ``top``."""
    top.add_argument("--json", action="store_true", help="print one snapshot as JSON")
    top.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    top.add_argument("--iterations", type=int, default=0, help="stop after N refreshes")
    top.set_defaults(func=run)


def _state(s: dict[str, Any]) -> str:
    if not s["active"]:
        return "inactive"
    if s["disabled"]:
        return "disabled"
    if s["in_cooldown"]:
        return "cooling"
    return "ready"


def snapshot(km: Any) -> dict[str, Any]:
    """Every pool and key as plain data (no secret)."""
    from rotating_llm.keys._prober import probe_results
    from rotating_llm.keys._status import learned_summary
    from rotating_llm.limiter._rates import read_rates

    probes = probe_results(km)
    statuses = km.get_all_key_statuses()
    rates = read_rates(km.store.primary, sorted({s["model_name"] for s in statuses}))
    pools: dict[str, list[dict[str, Any]]] = {}
    for s in statuses:
        counted = rates[s["model_name"]]["keys"].get(s["key_id"], {})
        row = {
            "key_id": s["key_id"],
            "state": _state(s),
            "reason": s["disabled_reason"] or s["cooldown_reason"],
            "cooldown_remaining": s["cooldown_remaining"],
            "rpm": [s["rpm_usage"], s["rpm_limit"]],
            "tpm": [s["tpm_usage"], s["tpm_limit"]],
            "rpd": [s["rpd_usage"], s["rpd_limit"]],
            "group": s["tags"].get("group"),
            "last_probe": probes.get(s["key_id"]),
            "learned_limits": _learned(s, learned_summary),
            **{f"{n}_rate": round(counted.get(f"{n}_rate", 0.0), 2) for n in _KEY_RATES},
            **{f"{n}_5m": int(counted.get(n, 0)) for n in _KEY_RATES},
        }
        pools.setdefault(s["model_name"], []).append(row)
    return {
        "at": time.time(),
        "store": km.store.primary.description,
        "pools": pools,
        "processes": _processes(km, pools),
        "queues": _queues(km, pools),
        "rates": {pool: {k: r[k] for k in ("window_s", "counts", "per_minute")}
                  for pool, r in rates.items()},
    }  # fmt: skip


def _learned(s: dict[str, Any], summary: Any) -> str | None:
    """The key's learned limits, then its group's (``group <id>: ...``); None: none."""
    parts = [summary(s)]
    for field in ("group", "learned_group"):
        if s.get(field):
            g = summary(s[field])
            parts.append(f"group {s[field]['group_id']}: {g}" if g else "")
    text = "; ".join(p for p in parts if p)
    return text or None


def _processes(km: Any, pools: dict[str, Any]) -> dict[str, int | None]:
    """Live processes per pool (from heartbeats); None on the embedded store."""
    from rotating_llm.keys._heartbeat import live_processes

    store = km.store.primary
    if store.is_embedded:
        return dict.fromkeys(pools)
    return {pool: live_processes(store, pool) for pool in pools}


def _queues(km: Any, pools: dict[str, Any]) -> dict[str, int | None]:
    """Tickets in each pool's queue of waiters that have not expired (by this host's
    clock: a view, not a decision); None on the embedded store (its queue lives only in
    the process that owns it)."""
    from rotating_llm.limiter._schema import TICKET, pool_base

    store = km.store.primary
    if store.is_embedded:
        return dict.fromkeys(pools)
    at = TICKET.index("expires_us")
    now_us = time.time() * 1_000_000
    out: dict[str, int | None] = {}
    for pool in pools:
        records = store.sync.hvals(pool_base(store.prefix, pool) + "qt")
        fields = [(r.decode() if isinstance(r, bytes) else str(r)).split() for r in records]
        out[pool] = sum(1 for f in fields if len(f) > at and int(f[at]) > now_us)
    return out


def _bar(used: int, limit: int | None, width: int = 10) -> str:
    if not limit:
        return f"{used}/-"
    filled = min(width, round(width * used / limit))
    return f"{'█' * filled}{'░' * (width - filled)} {used}/{limit}"


def _table(snap: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title=f"rotating-llm top  {snap['store']}  {time.strftime('%H:%M:%S')}")
    for col in (
        "pool",
        "procs",
        "key",
        "group",
        "state",
        "rpm",
        "tpm",
        "rpd",
        "queue",
        "learned",
        "served/429 /min",
        "refused /min",
        "last probe",
    ):
        table.add_column(col)
    for pool, rows in sorted(snap["pools"].items()):
        procs = snap["processes"].get(pool)
        refused = snap["rates"].get(pool, {}).get("per_minute", {}).get("refused")
        queue = snap["queues"].get(pool)
        for n, r in enumerate(rows):
            probe = r["last_probe"]
            table.add_row(
                pool,
                "-" if procs is None else str(procs),
                r["key_id"],
                r["group"] or "-",
                r["state"] + (f" ({r['reason']})" if r["reason"] else ""),
                _bar(*r["rpm"]),
                _bar(*r["tpm"]),
                _bar(*r["rpd"]),
                ("-" if queue is None else str(queue)) if n == 0 else "",
                r["learned_limits"] or "-",
                f"{r['served_rate']:g}/{r['rate_limited_rate']:g}",
                f"{refused:g}" if n == 0 and refused is not None else "",
                f"{probe['verdict']} ({probe['action']})" if probe else "-",
            )
    return table


def run(args: argparse.Namespace) -> int:
    """Show the table until interrupted (or ``--iterations``); ``--json``: once."""
    from rotating_llm.errors import RotatingLLMError
    from rotating_llm.keys import KeyManager

    path = Path(args.keys or os.environ.get("KEY_STORE_PATH") or "keys.json")
    try:
        km = KeyManager(key_store_path=path, probe=False)
        if args.json:
            print(json.dumps(snapshot(km), indent=2, default=str))
            return 0
        from rich.live import Live

        done = 0
        with Live(_table(snapshot(km)), screen=True, auto_refresh=False) as live:
            while True:
                done += 1
                live.update(_table(snapshot(km)), refresh=True)
                if args.iterations and done >= args.iterations:
                    break
                time.sleep(max(args.interval, 0.1))
    except RotatingLLMError as exc:
        print(f"rotating-llm: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0
