"""Tiers: a key of a higher tier is granted only when no key of a lower tier has room."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any

import pytest
from _tier_workers import hold, paced
from _windows import by_key, max_in_any_window
from prometheus_client import CollectorRegistry

from rotating_llm import AllKeysExhaustedError, APIKey, KeyManager, QuotaGroup
from rotating_llm.metrics import disable_metrics, enable_metrics


def _keys(*spec: tuple[str, int, int]) -> list[APIKey]:
    """Keys of pool ``m`` from (key_id, rpm, tier)."""
    return [
        APIKey(key_id=kid, model_name="m", provider="gemini", rpm=rpm, tpm=10**6, tier=tier)
        for kid, rpm, tier in spec
    ]


def _drain(km: KeyManager, n: int, **kw: Any) -> list[str]:
    out = []
    for _ in range(n):
        lease = km.acquire("m", 1, max_wait=0, **kw)
        out.append(lease.key_id)
        lease.complete(1)
    return out


def test_lower_tiers_first_then_each_higher_tier_as_overflow(
    make: Callable[..., KeyManager],
) -> None:
    km = make(_keys(("p0", 5, 1), ("f0", 2, 0), ("x0", 3, 7), ("f1", 2, 0)))
    got = _drain(km, 10)
    assert sorted(got[:4]) == ["f0", "f0", "f1", "f1"]  # the free tier, spread by headroom
    assert got[4:9] == ["p0"] * 5 and got[9] == "x0"
    assert _drain(km, 2) == ["x0", "x0"]
    with pytest.raises(AllKeysExhaustedError) as info:
        km.acquire("m", 1, max_wait=0)
    assert info.value.retry_after is not None and info.value.retry_after > 0


def test_strategy_applies_within_a_tier(make: Callable[..., KeyManager]) -> None:
    km = make(
        _keys(("f0", 10, 0), ("f1", 10, 0), ("p0", 10, 1), ("p1", 10, 1)), strategy="round_robin"
    )
    got = _drain(km, 20)
    assert got[:20:2] == ["f0"] * 10 or got[:20:2] == ["f1"] * 10  # alternating in tier 0
    assert sorted(set(got)) == ["f0", "f1"]
    got = _drain(km, 6)
    assert sorted(got) == ["p0", "p0", "p0", "p1", "p1", "p1"]


def test_a_cooling_free_key_sends_its_load_to_paid_and_back(
    make: Callable[..., KeyManager],
) -> None:
    km = make(_keys(("f0", 50, 0), ("p0", 50, 1)))
    assert _drain(km, 2) == ["f0", "f0"]
    km.mark_key_unhealthy("f0", 600, "rate limited (429)")
    assert _drain(km, 2) == ["p0", "p0"]
    km.clear_cooldown("f0")
    assert _drain(km, 2) == ["f0", "f0"]
    km.disable_key("f0", "revoked")
    assert _drain(km, 1) == ["p0"]
    km.enable_key("f0")
    assert _drain(km, 1) == ["f0"]


def test_changing_a_key_s_tier_moves_it(make: Callable[..., KeyManager]) -> None:
    km = make(_keys(("a", 3, 0), ("b", 3, 1)))
    assert _drain(km, 1) == ["a"]
    km.set_keys(_keys(("a", 3, 1), ("b", 3, 0)))
    assert _drain(km, 4) == ["b", "b", "b", "a"]  # a is in tier 1 only: never listed twice
    assert _drain(km, 1) == ["a"]
    with pytest.raises(AllKeysExhaustedError):
        km.acquire("m", 1, max_wait=0)


def test_a_quota_group_across_tiers_blocks_its_keys_in_every_tier(
    make: Callable[..., KeyManager],
) -> None:
    keys = [
        APIKey(key_id="f0", model_name="m", provider="x", rpm=9, tpm=10**6, quota_group="proj"),
        APIKey(key_id="p0", model_name="m", provider="x", rpm=9, tpm=10**6, tier=1,
               quota_group="proj"),
        APIKey(key_id="p1", model_name="m", provider="x", rpm=2, tpm=10**6, tier=1),
    ]  # fmt: skip
    km = make(keys, quota_groups=[QuotaGroup(group_id="proj", rpm=3)])
    got = _drain(km, 5)
    assert got[:3] == ["f0"] * 3  # the free key, until its project is full
    assert got[3:] == ["p1", "p1"]  # p0 is paid but of the full project: never
    with pytest.raises(AllKeysExhaustedError):
        km.acquire("m", 1, max_wait=0)


def test_a_key_added_in_a_higher_tier_is_overflow_at_once(make: Callable[..., KeyManager]) -> None:
    both = _keys(("f0", 2, 0), ("p0", 5, 2))
    km = make(both)  # (the secret store knows both)
    km.remove_key("p0")
    assert _drain(km, 2) == ["f0", "f0"]
    with pytest.raises(AllKeysExhaustedError):
        km.acquire("m", 1, max_wait=0)
    km.add_key(both[1])
    assert _drain(km, 2) == ["p0", "p0"]


def test_status_and_metrics_show_the_tier(make: Callable[..., KeyManager]) -> None:
    reg = CollectorRegistry()
    enable_metrics(reg)
    try:
        km = make(_keys(("f0", 1, 0), ("p0", 5, 3)))
        assert _drain(km, 3) == ["f0", "p0", "p0"]
        tiers = {st["key_id"]: st["tier"] for st in km.get_all_key_statuses()}
        assert tiers == {"f0": 0, "p0": 3} and km.get_key_status("p0")["tier"] == 3
        sample = reg.get_sample_value
        assert sample("rotating_llm_tier_leases_total", {"model": "m", "tier": "0"}) == 1
        assert sample("rotating_llm_tier_leases_total", {"model": "m", "tier": "3"}) == 2
    finally:
        disable_metrics(reg)


def _dump(keys: list[APIKey]) -> list[dict[str, Any]]:
    return [k.model_dump() for k in keys]


@pytest.mark.multiprocess
@pytest.mark.slow
def test_paid_keys_see_no_request_while_a_free_key_has_room(redis_url: str, prefix: str) -> None:
    # 4 processes, each at most ~6 requests per 1 s window: 24 < the free tier's 40
    keys = _dump(_keys(("f0", 20, 0), ("f1", 20, 0), ("p0", 20, 1), ("p1", 20, 1)))
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        results = pool.starmap(paced, [(redis_url, prefix, keys, 1.0, 2.5, 0.2)] * 4)
    grants = [g for r in results for g in r]
    assert len(grants) >= 4 * 5
    assert {kid for kid, _ in grants} == {"f0", "f1"}


@pytest.mark.multiprocess
@pytest.mark.slow
def test_demand_beyond_the_free_tier_gets_all_capacity_paid_only_as_overflow(
    redis_url: str, prefix: str
) -> None:
    window, duration = 1.0, 3.5
    spec = (("f0", 3, 0), ("f1", 2, 0), ("p0", 3, 1), ("p1", 2, 1))
    rpm = {kid: r for kid, r, _ in spec}
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        args = (redis_url, prefix, _dump(_keys(*spec)), window, duration)
        results = pool.starmap(hold, [args] * 4)
    grants = [g for r in results for g in r]
    w_us = int(window * 1e6)
    per_key = by_key(grants)
    for kid, instants in per_key.items():  # no over-admission on any key
        assert max_in_any_window(instants, w_us) <= rpm[kid]
    instants = sorted(ts for _, ts in grants)
    span = (instants[-1] - instants[0]) / 1e6
    assert len(instants) >= sum(rpm.values()) * int(span / window)  # all capacity granted
    paid = [ts for kid, ts in grants if kid.startswith("p")]
    assert paid  # demand beyond the free tier overflowed
    for ts in paid:  # ... only when every free key was full at that instant
        for kid in ("f0", "f1"):
            held = sum(1 for t in per_key[kid] if ts - w_us < t <= ts)
            assert held >= rpm[kid], (kid, ts)
