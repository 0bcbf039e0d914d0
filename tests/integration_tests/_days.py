"""Fake daily boundaries: move a manager's day without waiting for midnight.

The scripts take today's start and the next reset from the four boundaries the client
passes, compared with Redis's clock; a test passes boundaries of its own.
"""

from __future__ import annotations

from typing import Any

_DAY_US = 86_400_000_000


def store_now_us(km: Any) -> int:
    """Now on the manager's store clock, in microseconds."""
    raw = km.store.primary.sync.time()
    if isinstance(raw, dict):  # a cluster: one answer per node
        raw = next(iter(raw.values()))
    sec, usec = raw
    return int(sec) * 1_000_000 + int(usec)


def set_day(km: Any, start_us: int, next_us: int) -> None:
    """Make today the day from ``start_us`` to ``next_us`` (both UTC microseconds)."""
    marks = (str(start_us - _DAY_US), str(start_us), str(next_us), str(next_us + _DAY_US))
    km.limiter.days.args = lambda: marks
    km.limiter.days.next_reset = lambda: next_us / 1_000_000
