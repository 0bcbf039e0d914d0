"""The chaos table's counts (``bench/chaos.py``), asserted: per scenario, several
processes on one pool while their Redis is loaded, slowed, paused, killed, flushed or
closed to scripts.

Grants of a key never exceed its limit in any window; a slow or paused Redis is never
failed over from; a killed one is, within the degraded share; no reservation is left
behind; every acquire ends within its bound (``max_wait`` plus the store deadline, plus
a small margin for a loaded machine: a bound, not a speed claim), sync and async (the
last worker's callers are asyncio tasks)."""

from __future__ import annotations

import pytest
from bench.chaos import ACL_PASSWORD, run_scenario

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.multiprocess]

#: what a loaded two-core machine may add to a bound (scheduling, the GIL): no stall,
#: probe or failover may (the probe waits at most what is left of the deadline)
SLACK = 0.25
#: 560 callers on a shared two-core machine: a process's threads wait for the GIL and
#: the CPU past the library's bound; the check is that no call hangs
STRESS_SLACK = 3.0


@pytest.mark.parametrize(
    "scenario", ["load", "sleep3", "sleep6", "sleep12", "pause", "kill", "flush"]
)
def test_chaos_scenario_counts(scenario: str) -> None:
    row = run_scenario(scenario, workers=3, seconds=8.0)  # past the stall (sleep12: 17 s)
    print(row)
    assert row["max_per_key"] <= row["limit"], row
    assert row["left_behind"] == 0, row
    assert row["max_call_s"] <= row["bound_s"] + SLACK, row  # sync and async callers
    assert 0 < row["max_async_call_s"] <= row["max_call_s"], row  # the async ones ran
    errors = row["errors"]
    assert set(errors) <= {"AllKeysExhaustedError", "StoreTimeoutError"}, row
    if scenario in ("load", "flush"):  # Redis is up: a lease or the pool's own refusal
        assert set(errors) <= {"AllKeysExhaustedError"}, row
    assert row["healthy"] is True, row  # at the end Redis is up (back) and says so
    if scenario in ("load", "sleep3", "pause", "flush"):  # slow or emptied, never lost
        assert row["degraded"] == 0, row
    if scenario in ("sleep6", "sleep12", "kill"):  # lost: served in process, in the share
        assert row["degraded"] > 0, row
    if scenario == "sleep3":  # callers past their deadline were told so
        assert errors.get("StoreTimeoutError", 0) > 0, row
    assert row["missing"] == 0, row  # every grant is on Redis at the end (written back)


def test_chaos_stress_mix_never_over_admits_nor_fails_over() -> None:
    """8 processes x 20 threads and 8 processes x 50 asyncio tasks on 3 keys of rpm 7
    (5 s window), default timings and ``local`` mode, a healthy Redis, three windows:
    per key no window holds more than 7 grants, no process fails over, and every call
    ends with a lease or a refusal (an ``AllKeysExhaustedError``; a decision Redis did
    not answer within the deadline is one too, ``StoreTimeoutError``), never another
    store error."""
    row = run_scenario("stress")
    print(row)
    assert row["grants"] > 0, row
    assert row["max_per_key"] <= row["limit"], row
    assert row["degraded"] == 0, row  # the measured bug: processes declared Redis lost
    assert set(row["errors"]) <= {"AllKeysExhaustedError", "StoreTimeoutError"}, row
    assert row["errors"].get("AllKeysExhaustedError", 0) > 0, row  # demand >> capacity
    assert row["left_behind"] == 0, row
    assert row["missing"] == 0, row
    assert row["healthy"] is True, row
    assert row["max_call_s"] <= row["bound_s"] + STRESS_SLACK, row


def test_chaos_acl_without_scripting_is_named_and_leaves_nothing() -> None:
    """A Redis user that may not run EVAL/FCALL/FUNCTION: every caller gets the
    library's ``StoreError`` at once (no failover: Redis is up), nothing is reserved,
    and health says unhealthy and names scripting (never the password)."""
    row = run_scenario("acl", workers=3, seconds=3.0)
    print(row)
    assert row["grants"] == 0, row
    assert set(row["errors"]) == {"StoreError"}, row
    assert row["degraded"] == 0, row
    assert row["left_behind"] == 0, row
    assert row["max_call_s"] <= row["bound_s"] + SLACK, row
    assert row["healthy"] is False, row
    assert any("scripting" in p for p in row["problems"]), row
    assert ACL_PASSWORD not in str(row), row
