"""The pool's queue of waiters across processes: priority first, tenants' turns, no
stall by a dead waiter, exact limits (issue #15 item 1)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
import time
from typing import Any

import pytest
import redis
from _queue_workers import build, keep_acquiring, wait_all, wait_excluding, wait_once
from _windows import by_key, max_in_any_window
from redis.cluster import RedisCluster

from conftest import make_keys
from rotating_llm import AllKeysExhaustedError

pytestmark = [pytest.mark.redis]

_CTX = multiprocessing.get_context("spawn")


def _queued(
    redis_url: str, prefix: str, n: int, within: float = 60.0, cluster: bool = False
) -> None:
    """Wait until ``n`` tickets are in pool m's queue."""
    client: Any = (RedisCluster if cluster else redis.Redis).from_url(redis_url)
    end = time.monotonic() + within
    while client.zcard(f"{prefix}v3:{{m}}:q") < n:
        assert time.monotonic() < end, "the waiters did not queue"
        time.sleep(0.01)
    client.close()


def _fill(
    redis_url: str, prefix: str, keys: list[Any], n: int, cluster: bool = False
) -> tuple[Any, list[Any]]:
    km = build(redis_url, prefix, [k.model_dump() for k in keys], 30.0, cluster)
    return km, [km.acquire("m", 1) for _ in range(n)]


@pytest.mark.multiprocess
@pytest.mark.parametrize("deployment", ["redis", "cluster"])
def test_high_priority_waiters_queued_last_are_served_at_the_next_grants(
    request, prefix, deployment
) -> None:
    cluster = deployment == "cluster"
    url = request.getfixturevalue("cluster_url" if cluster else "redis_url")
    keys = make_keys(1, rpm=2)
    dumped = [k.model_dump() for k in keys]
    km, held = _fill(url, prefix, keys, 2, cluster)
    lows, highs = [(0, None)] * 12, [(9, None)] * 3
    with _CTX.Pool(2) as pool:
        low = pool.apply_async(wait_all, (url, prefix, dumped, 30.0, lows, 60, cluster))
        _queued(url, prefix, 12, cluster=cluster)
        high = pool.apply_async(wait_all, (url, prefix, dumped, 30.0, highs, 60, cluster))
        _queued(url, prefix, 15, cluster=cluster)
        for lease in held:  # two slots back: each waiter served releases its own
            lease.release()
        grants = sorted(low.get(60) + high.get(60), key=lambda g: g[2])
    km.close()
    assert [g[0] for g in grants[:3]] == [9, 9, 9]
    assert len(grants) == 15


@pytest.mark.multiprocess
def test_tenants_take_turns_until_the_smaller_drains(redis_url, prefix) -> None:
    keys = make_keys(1, rpm=1)
    dumped = [k.model_dump() for k in keys]
    km, held = _fill(redis_url, prefix, keys, 1)
    with _CTX.Pool(2) as pool:
        big = pool.apply_async(wait_all, (redis_url, prefix, dumped, 30.0, [(0, "big")] * 20, 60))
        _queued(redis_url, prefix, 20)
        small = pool.apply_async(
            wait_all, (redis_url, prefix, dumped, 30.0, [(0, "a@b.example")] * 3, 60)
        )
        _queued(redis_url, prefix, 23)
        held[0].release()
        grants = sorted(big.get(60) + small.get(60), key=lambda g: g[2])
    km.close()
    order = [g[1] for g in grants]
    assert order[:6] == ["big", "a@b.example"] * 3
    assert order[6:] == ["big"] * 17
    # tenants reach Redis as digests only
    client = redis.Redis.from_url(redis_url)
    assert not [k for k in client.keys(f"{prefix}*") if b"a@b" in k]
    client.close()


@pytest.mark.multiprocess
def test_a_killed_waiter_does_not_stall_the_queue(redis_url, prefix) -> None:
    keys = make_keys(1, rpm=1)
    dumped = [k.model_dump() for k in keys]
    km, held = _fill(redis_url, prefix, keys, 1)
    proc = _CTX.Process(target=wait_once, args=(redis_url, prefix, dumped, 30.0))
    proc.start()
    _queued(redis_url, prefix, 1)
    os.kill(proc.pid, signal.SIGKILL)  # the head of the queue dies holding its ticket
    proc.join()
    held[0].release()  # capacity back: signalled to the dead head
    # its ticket lives 1 s: the next waiter is served once it expired, not a window later
    lease = km.acquire("m", 1, max_wait=3.0)
    assert lease.reservation is not None
    lease.release()
    km.close()
    client = redis.Redis.from_url(redis_url)
    assert client.zcard(f"{prefix}v3:{{m}}:q") == 0
    client.close()


@pytest.mark.multiprocess
@pytest.mark.slow
def test_four_processes_with_mixed_priorities_get_exactly_the_capacity(redis_url, prefix) -> None:
    keys = [k.model_dump() for k in make_keys(2, rpm=5)]
    window, duration = 0.5, 3.0
    args = [(redis_url, prefix, keys, window, duration, [p, p - 3, p + 5]) for p in range(4)]
    with _CTX.Pool(4) as pool:
        results = pool.starmap(keep_acquiring, args)
    grants = [g for r in results for g in r]
    for instants in by_key(grants).values():  # no over-admission in any window
        assert max_in_any_window(instants, int(window * 1e6)) <= 5
    # no lost capacity: the waiters take each slot as it frees (10 per window)
    assert len(grants) >= 10 * (duration / window - 1)


@pytest.mark.multiprocess
@pytest.mark.slow
def test_200_waiters_in_4_processes_are_served_in_priority_order(redis_url, prefix) -> None:
    keys = make_keys(1, rpm=200)
    dumped = [k.model_dump() for k in keys]
    km, held = _fill(redis_url, prefix, keys, 200)
    specs = [[((i * 37 + j * 11) % 41 - 20, None) for i in range(50)] for j in range(4)]
    with _CTX.Pool(4) as pool:
        jobs = [pool.apply_async(wait_all, (redis_url, prefix, dumped, 60.0, s, 60)) for s in specs]
        _queued(redis_url, prefix, 200)
        for lease in held:
            lease.release()
        grants = sorted((g for j in jobs for g in j.get(60)), key=lambda g: g[2])
    km.close()
    prios = [g[0] for g in grants]
    assert len(prios) == 200
    assert prios == sorted(prios, reverse=True)


def test_a_head_whose_request_fits_no_key_does_not_hold_back_a_newcomer(manager_factory) -> None:
    km = manager_factory(make_keys(1, rpm=10, tpm=100), window_seconds=30.0)
    km.acquire("m", 1).release()  # (registered)
    held = km.acquire("m", 50)
    got: list[Any] = []
    # the head waits for 100 tokens while 50 are free: room it cannot use
    waiter = threading.Thread(target=lambda: got.append(km.acquire("m", 100, max_wait=40)))
    waiter.start()
    _wait_queued(km, 1)
    small = km.acquire("m", 1, max_wait=0)  # so a small request takes it
    assert small.reservation is not None
    small.release()
    high = km.acquire("m", 1, max_wait=0, priority=1)
    assert high.reservation is not None
    high.release()
    held.release()
    waiter.join()
    assert got and got[0].reservation is not None
    got[0].release()


@pytest.mark.multiprocess
def test_a_head_excluding_a_key_leaves_it_to_the_others(redis_url, prefix) -> None:
    keys = make_keys(2, rpm=1)
    dumped = [k.model_dump() for k in keys]
    km, held = _fill(redis_url, prefix, keys, 2)
    on = {lease.key_id: lease for lease in held}
    client = redis.Redis.from_url(redis_url)
    with _CTX.Pool(1) as pool:  # the head, in another process, will not take k1
        head = pool.apply_async(wait_excluding, (redis_url, prefix, dumped, 30.0, ["k1"]))
        _queued(redis_url, prefix, 1)
        got: list[Any] = []
        behind = threading.Thread(target=lambda: got.append(_try(km, 40.0)))
        behind.start()
        _queued(redis_url, prefix, 2)
        on["k1"].release()  # k1 back: the head cannot use it, the waiter behind can
        behind.join()
        assert got[0].key_id == "k1"
        assert client.zcard(f"{prefix}v3:{{m}}:q") == 1  # while the head still waits
        got[0].release()  # and a newcomer that will not wait takes it too
        newcomer = km.acquire("m", 1, max_wait=0)
        assert newcomer.key_id == "k1"
        assert client.zcard(f"{prefix}v3:{{m}}:q") == 1
        on["k0"].release()  # the head's own key back: the head is served
        assert head.get(30) == "k0"
    newcomer.release()
    km.close()
    client.close()


def _wait_queued(km: Any, n: int) -> None:
    client = km.limiter.store.primary.sync
    key = f"{km.settings.key_prefix}v3:{{m}}:q"
    end = time.monotonic() + 30
    while client.zcard(key) < n:
        assert time.monotonic() < end
        time.sleep(0.005)


def test_exhausted_error_tells_the_queue_position(manager_factory) -> None:
    km = manager_factory(make_keys(1, rpm=1), window_seconds=30.0, queue_ticket_seconds=1.0)
    held = [km.acquire("m", 1)]
    done: list[Any] = []
    first = threading.Thread(target=lambda: done.append(_try(km, 40.0)))
    first.start()
    _wait_queued(km, 1)
    err = _try(km, 0.3)  # behind the first waiter until it gives up
    assert isinstance(err, AllKeysExhaustedError)
    assert err.queue_position == 1
    assert "1 ahead in the queue" in str(err)
    held[0].release()
    first.join()
    assert not isinstance(done[0], Exception)


def _try(km: Any, max_wait: float) -> Any:
    try:
        return km.acquire("m", 1, max_wait=max_wait)
    except AllKeysExhaustedError as exc:
        return exc


async def test_async_waiters_are_woken_in_turn(manager_factory) -> None:
    km = manager_factory(make_keys(1, rpm=1), window_seconds=10.0, queue_ticket_seconds=1.0)
    held = [km.acquire("m", 1)]
    order: list[int] = []

    async def one(i: int, priority: int) -> None:
        lease = await km.aacquire("m", 1, max_wait=20, priority=priority)
        order.append(i)
        await lease.arelease()

    tasks = []
    for i, p in enumerate([0, 0, 5, 0]):
        tasks.append(asyncio.create_task(one(i, p)))
        await asyncio.sleep(0.05)
    await asyncio.to_thread(held[0].release)
    await asyncio.gather(*tasks)
    assert order == [2, 0, 1, 3]
    await km.aclose()


async def test_a_cancelled_waiter_leaves_the_queue(manager_factory) -> None:
    km = manager_factory(make_keys(1, rpm=1), window_seconds=10.0, queue_ticket_seconds=30.0)
    held = await km.aacquire("m", 1)
    first = asyncio.create_task(km.aacquire("m", 1, max_wait=20))
    await asyncio.to_thread(_wait_queued, km, 1)
    second = asyncio.create_task(km.aacquire("m", 1, max_wait=20))
    await asyncio.to_thread(_wait_queued, km, 2)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await km.limiter.aflush()  # (the cancelled waiter leaves in the background)
    client = km.limiter.store.primary.sync
    # gone at once, not when its 30 s ticket would expire
    assert client.zcard(f"{km.settings.key_prefix}v3:{{m}}:q") == 1
    await held.arelease()
    lease = await second
    assert lease.reservation is not None
    await lease.arelease()
    await km.aclose()
