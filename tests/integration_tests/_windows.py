"""Checks of the sliding-window property on grant instants taken from Redis's clock."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable


def by_key(grants: Iterable[tuple[str, int]]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for kid, ts in grants:
        out[kid].append(ts)
    return {k: sorted(v) for k, v in out.items()}


def max_in_any_window(instants: list[int], window_us: int) -> int:
    """The most grants inside any half-open interval [t, t + window), however aligned."""
    best, lo = 0, 0
    for hi, t in enumerate(instants):
        while instants[lo] <= t - window_us:
            lo += 1
        best = max(best, hi - lo + 1)
    return best
