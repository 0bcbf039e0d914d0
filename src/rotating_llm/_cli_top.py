"""``rotating-llm top``: a live table of every pool and key, read from the shared store.

What the store keeps is shown: state, usage of each limit, the prober's last verdict,
and per pool the long-lived processes whose heartbeat has not expired.
Queue length, learned limits and served/429/refused rates are not kept in the store
yet; their columns show ``-`` rather than numbers this process could not know.
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

_NOT_KEPT = ("queue", "learned_limits", "served_rate", "rate_limited_rate", "refused_rate")


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

    probes = probe_results(km)
    pools: dict[str, list[dict[str, Any]]] = {}
    for s in km.get_all_key_statuses():
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
            **dict.fromkeys(_NOT_KEPT),
        }
        pools.setdefault(s["model_name"], []).append(row)
    return {
        "at": time.time(),
        "store": km.store.primary.description,
        "pools": pools,
        "processes": _processes(km, pools),
    }


def _processes(km: Any, pools: dict[str, Any]) -> dict[str, int | None]:
    """Live processes per pool (from heartbeats); None on the embedded store."""
    from rotating_llm.keys._heartbeat import live_processes

    store = km.store.primary
    if store.is_embedded:
        return dict.fromkeys(pools)
    return {pool: live_processes(store, pool) for pool in pools}


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
        "rates",
        "last probe",
    ):
        table.add_column(col)
    for pool, rows in sorted(snap["pools"].items()):
        procs = snap["processes"].get(pool)
        for r in rows:
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
                "-",
                "-",
                "-",
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
