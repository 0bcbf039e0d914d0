"""The manager's health report: the real scripts, a dry-run decision, live processes.

Each pool's ``status`` script runs: the same fit check a decision makes, for a one-token
request, with nothing reserved. A pool can serve when one key is in rotation (not
disabled) and has room now or after a cooldown. What is wrong is named in ``problems``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import redis.exceptions as rex

from rotating_llm.errors import StoreError

if TYPE_CHECKING:
    from rotating_llm.keys.manager import KeyManager

__all__ = ["health_report"]


def _refused_scripts(exc: BaseException) -> bool:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, rex.NoPermissionError) or "NOPERM" in str(cause):
            return True
        cause = cause.__cause__
    return False


def _mode(manager: KeyManager, store_ok: bool) -> str:
    primary = manager.store.primary
    if not store_ok and not primary.is_embedded and manager.store.mode == "local":
        return "degraded"  # decisions run on a per-process store: limits are not shared
    return primary.kind


def _pool_report(manager: KeyManager, pool: str, problems: list[str]) -> dict[str, Any]:
    from rotating_llm.keys._heartbeat import live_members

    out: dict[str, Any] = {"active_keys": 0, "cooling_keys": 0, "can_admit_now": False}
    usage = manager.limiter.usage(pool)
    for u in usage.values():
        if not u.in_pool or u.disabled_reason:
            continue
        out["active_keys"] += 1
        if u.cooldown_remaining > 0:
            out["cooling_keys"] += 1
        elif u.next_capacity_in is not None and u.next_capacity_in <= 0:
            out["can_admit_now"] = True
    if not out["active_keys"]:
        problems.append(f"pool {pool!r}: no active keys (every key disabled or removed)")
    store = manager.store.primary
    if not store.is_embedded:
        out["members"] = live_members(store, pool)
        out["live_processes"] = len(out["members"])
    return out


def health_report(manager: KeyManager) -> dict[str, Any]:
    """``healthy`` only when the store runs the scripts and every pool has an active key."""
    primary = manager.store.primary
    problems: list[str] = []
    report: dict[str, Any] = {
        "store": primary.kind,
        "store_url": primary.description,
        "on_store_failure": manager.store.mode,
        "keys_loaded": len(manager.keys),
        "models": manager.models(),
    }
    try:
        primary.sync.ping()
        report["store_ok"] = True
    except Exception as exc:  # any driver error: report, never raise
        report["store_ok"] = False
        report["error"] = f"{type(exc).__name__}: {exc}"
        problems.append(f"Redis at {primary.description} does not answer")
    report["mode"] = _mode(manager, report["store_ok"])
    pools: dict[str, Any] = {}
    if report["store_ok"]:
        for pool in report["models"]:
            try:
                pools[pool] = _pool_report(manager, pool, problems)
            except StoreError as exc:
                if _refused_scripts(exc):
                    problems.append(
                        "Redis refused the scripts (the ACL user lacks scripting: "
                        "allow EVAL, EVALSHA and FCALL, e.g. +@scripting)"
                    )
                    break
                problems.append(f"pool {pool!r}: {exc}")
            except Exception as exc:  # report, never raise
                problems.append(f"pool {pool!r}: {type(exc).__name__}: {exc}")
    if not report["models"]:
        problems.append("no active keys (none loaded, or every key inactive)")
    report["pools"] = pools
    report["active_keys"] = sum(p["active_keys"] for p in pools.values())
    members = [p.pop("members") for p in pools.values() if "members" in p]
    report["live_processes"] = len(set().union(*members)) if members else None
    report["problems"] = problems
    report["healthy"] = not problems
    return report
