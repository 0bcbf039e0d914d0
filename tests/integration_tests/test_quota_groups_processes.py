"""Four processes, three keys of one quota group with a group RPM of 4: exactly 4 grants
in any window, however the processes race, on a Redis server and a Redis Cluster."""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

import pytest
from _group_workers import build, burst, keep_acquiring
from _windows import max_in_any_window

from conftest import make_keys

pytestmark = [pytest.mark.multiprocess, pytest.mark.slow]

DOC = {
    "keys": [k.model_dump() for k in make_keys(3, rpm=10, tpm=100_000, quota_group="proj-a")],
    "quota_groups": [{"group_id": "proj-a", "rpm": 4}],
}


def test_four_processes_get_exactly_the_group_s_capacity(
    store_target: dict[str, Any], prefix: str
) -> None:
    ctx = multiprocessing.get_context("spawn")
    start_at = time.time() + 4.0  # every process starts bursting at once
    with ctx.Pool(4) as pool:
        results = pool.starmap(burst, [(store_target, prefix, DOC, start_at, 7)] * 4)
    grants = [g for r in results for g in r]
    assert len(grants) == 4  # not 30 (3 keys x 10): the group's 4
    km = build(store_target, prefix, DOC, 60.0)
    group = km.get_group_status("proj-a")
    # every grant reserved 10 tokens and was settled at 7, on its key and on the group
    assert (group["rpm_usage"], group["tpm_usage"]) == (4, 28)
    assert sum(st["tpm_usage"] for st in km.get_all_key_statuses()) == 28
    km.close()


def test_four_waiting_processes_keep_the_group_s_every_window(redis_url: str, prefix: str) -> None:
    window, duration = 1.0, 3.5
    ctx = multiprocessing.get_context("spawn")
    args = ({"redis_url": redis_url}, prefix, DOC, window, duration)
    with ctx.Pool(4) as pool:
        results = pool.starmap(keep_acquiring, [args] * 4)
    instants = sorted(ts for r in results for _, ts in r)
    assert max_in_any_window(instants, int(window * 1e6)) <= 4
    # waiting callers take each group slot as it frees: a full window per second
    span = (instants[-1] - instants[0]) / 1e6
    assert len(instants) >= 4 * int(span / window)
    assert len({kid for r in results for kid, _ in r}) >= 2
