"""Exact sliding windows: never more than the limit in any window, however aligned."""

from __future__ import annotations

import time

import pytest
import redis
from _windows import by_key, max_in_any_window

from conftest import make_keys
from rotating_llm import AllKeysExhaustedError, RequestTooLargeError

pytestmark = pytest.mark.redis


def redis_now(url: str) -> float:
    sec, usec = redis.Redis.from_url(url).time()
    return sec + usec / 1e6


def test_burst_across_a_clock_boundary_is_refused(manager_factory, redis_url) -> None:
    km = manager_factory(make_keys(1, rpm=5), window_seconds=1.0)
    # fill the key late in one clock second ...
    while redis_now(redis_url) % 1.0 < 0.75:
        time.sleep(0.005)
    for _ in range(5):
        km.acquire("m", 1).complete()
    # ... and try again early in the next clock second: a fixed bucket would admit it
    while redis_now(redis_url) % 1.0 > 0.5:
        time.sleep(0.005)
    with pytest.raises(AllKeysExhaustedError) as info:
        km.acquire("m", 1)
    assert info.value.reasons == {"k0": "rpm"}
    assert 0.2 < info.value.retry_after <= 1.0


@pytest.mark.slow
def test_sequential_demand_never_exceeds_any_window(manager_factory) -> None:
    km = manager_factory(make_keys(2, rpm=4), window_seconds=0.5)
    grants = []
    end = time.monotonic() + 2.0
    while time.monotonic() < end:
        lease = km.acquire("m", 1, max_wait=1.0)
        grants.append((lease.key_id, lease.reservation.granted_at_us))
        lease.complete()
    for _kid, instants in by_key(grants).items():
        assert max_in_any_window(instants, 500_000) <= 4
    # and no capacity was wasted: a waiting caller gets every slot as it frees
    assert len(grants) >= 8 * 4


def test_tpm_window_counts_tokens(manager_factory) -> None:
    km = manager_factory(make_keys(1, rpm=100, tpm=100), window_seconds=30)
    km.acquire("m", 60).complete()
    with pytest.raises(AllKeysExhaustedError) as info:
        km.acquire("m", 50)
    assert info.value.reasons == {"k0": "tpm"}
    km.acquire("m", 40).complete()  # exactly fills it
    assert km.limiter.get_tpm_usage("k0")["used"] == 100


def test_request_larger_than_every_tpm_fails_at_once(manager_factory) -> None:
    km = manager_factory(make_keys(2, tpm=1000))
    start = time.monotonic()
    with pytest.raises(RequestTooLargeError) as info:
        km.acquire("m", 1001, max_wait=30)
    assert time.monotonic() - start < 5  # it did not wait for max_wait
    assert info.value.max_tpm == 1000 and "1001" in str(info.value)


@pytest.mark.slow
def test_capacity_return_time_comes_from_redis(manager_factory, redis_url) -> None:
    km = manager_factory(make_keys(2, rpm=1), window_seconds=3)
    a = km.acquire("m", 1)
    time.sleep(0.5)
    b = km.acquire("m", 1)
    with pytest.raises(AllKeysExhaustedError) as info:
        km.acquire("m", 1)
    # the earliest slot frees 3 s after the first grant, on Redis's clock
    expected = (a.reservation.granted_at_us + 3_000_000) / 1e6 - redis_now(redis_url)
    assert info.value.retry_after == pytest.approx(expected, abs=0.1)
    assert set(info.value.reasons) == {"k0", "k1"}
    assert b.key_id != a.key_id
    # a caller that may wait that long is served exactly when it frees
    lease = km.acquire("m", 1, max_wait=5)
    assert lease.key_id == a.key_id
    assert lease.reservation.granted_at_us >= a.reservation.granted_at_us + 3_000_000
    assert lease.waited == pytest.approx(info.value.retry_after, abs=0.3)


def test_rpd_resets_at_the_next_local_midnight(manager_factory) -> None:
    km = manager_factory(make_keys(1, rpm=100, rpd=2), rpd_timezone="America/Los_Angeles")
    km.acquire("m").complete()
    km.acquire("m").complete()
    with pytest.raises(AllKeysExhaustedError) as info:
        km.acquire("m")
    assert info.value.reasons == {"k0": "rpd"}
    to_midnight = km.limiter.days.next_reset() - time.time()
    assert info.value.retry_after == pytest.approx(to_midnight, abs=2)
    assert km.get_key_status("k0")["rpd_usage"] == 2


def test_client_clock_skew_does_not_move_windows(manager_factory, monkeypatch) -> None:
    km = manager_factory(make_keys(1, rpm=2), window_seconds=30)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3600)  # client one hour ahead
    km.acquire("m").complete()
    km.acquire("m").complete()
    with pytest.raises(AllKeysExhaustedError) as info:
        km.acquire("m")
    assert 29 < info.value.retry_after <= 30
