"""Redis time per command from ``INFO commandstats``, shared by the Redis-cost benchmarks."""

from __future__ import annotations

from typing import Any

__all__ = ["SCRIPTS", "command_stats", "delta", "script_us"]

#: The commands that run a script (their time includes every command the script runs).
SCRIPTS = ("fcall", "fcall_ro", "evalsha", "evalsha_ro", "eval", "eval_ro")


def command_stats(client: Any) -> dict[str, tuple[int, int]]:
    """``{command: (calls, usec)}`` from ``INFO commandstats``."""
    out = {}
    for name, row in client.info("commandstats").items():
        out[name.removeprefix("cmdstat_")] = (int(row["calls"]), int(row["usec"]))
    return out


def delta(client: Any, before: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    """Calls and usec per command since ``before`` (the ``INFO`` calls themselves left out)."""
    after = command_stats(client)
    out = {}
    for name, (calls, usec) in after.items():
        c0, u0 = before.get(name, (0, 0))
        if calls - c0 > 0:
            out[name] = (calls - c0, usec - u0)
    out.pop("info", None)
    return out


def script_us(changes: dict[str, tuple[int, int]]) -> float:
    """usec per call of the script commands (fcall/evalsha) in ``changes``."""
    calls = sum(c for k, (c, _) in changes.items() if k in SCRIPTS)
    usec = sum(u for k, (_, u) in changes.items() if k in SCRIPTS)
    return round(usec / calls, 2) if calls else 0.0
