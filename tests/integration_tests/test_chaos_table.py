"""The chaos table's counts (``bench/chaos.py``), asserted: per scenario, several
processes on one pool while their Redis is slowed, paused, killed or flushed.

Grants of a key never exceed its limit (the run is inside one window); a slow or
paused Redis is never failed over from; a killed one is, within the degraded share; no
reservation is left behind; every acquire ends within its bound (``max_wait`` plus the
store deadline, plus a generous second: a bound, not a speed claim)."""

from __future__ import annotations

import pytest
from bench.chaos import run_scenario

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.multiprocess]

SLACK = 1.0


@pytest.mark.parametrize("scenario", ["load", "sleep3", "sleep6", "pause", "kill", "flush"])
def test_chaos_scenario_counts(scenario: str) -> None:
    row = run_scenario(scenario, workers=3, seconds=8.0)  # past the longest stall
    print(row)
    assert row["max_per_key"] <= row["limit"], row
    assert row["left_behind"] == 0, row
    assert row["max_call_s"] <= row["bound_s"] + SLACK, row
    errors = row["errors"]
    assert set(errors) <= {"AllKeysExhaustedError", "StoreTimeoutError"}, row
    if scenario in ("load", "flush"):  # Redis is up: a lease or the pool's own refusal
        assert set(errors) <= {"AllKeysExhaustedError"}, row
    if scenario in ("load", "sleep3", "pause", "flush"):  # slow or emptied, never lost
        assert row["degraded"] == 0, row
    if scenario in ("sleep6", "kill"):  # lost: served in process, within the share
        assert row["degraded"] > 0, row
    if scenario == "sleep3":  # callers past their deadline were told so
        assert errors.get("StoreTimeoutError", 0) > 0, row
    assert row["missing"] == 0, row  # every grant is on Redis at the end (written back)
