"""``allow`` mode interrupted while it fails open: nothing is left behind.

When Redis does not answer (stalled past the deadline, or down), ``allow`` mode gives
the caller a lease without a reservation; that lease's secret is read after the store
call failed. A caller that gives up during that read (``KeyboardInterrupt``, a
cancelled task) gets no lease, and the acquire a stalled Redis ran after all has its
grant released once Redis answers again: no reservation is left behind, and the pool
serves as before. Each test runs its own ``redis-server``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest
import redis
from _redis_server import RedisProcess
from _stalls import Unready, eventually, held, stall

from conftest import make_keys, secrets_for
from rotating_llm import KeyManager, Settings

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
def server(own_redis: RedisProcess) -> RedisProcess:
    """The test's own redis-server (the shared ``own_redis`` fixture)."""
    return own_redis


def _manager(url: str) -> tuple[KeyManager, Unready]:
    keys = make_keys(2, rpm=100, tpm=10_000)
    store = Unready(secrets_for(keys))
    settings = Settings(
        redis_url=url,
        window_seconds=60,
        max_wait=0,
        on_store_failure="allow",
        store_deadline=1.0,
        store_lost_after=8.0,  # a stall is slow, not lost
        store_retry_interval=0.2,
        heartbeat_seconds=0,
    )
    km = KeyManager(keys, settings=settings, secret_store=store, probe=False)
    km.limiter.usage("m")  # connected, pool registered; no secret read yet
    return km, store


def _stall(url: str, seconds: int) -> threading.Thread:
    return stall(redis.Redis.from_url(url, socket_timeout=60), "DEBUG", "SLEEP", seconds)


def _serves_as_before(km: KeyManager, store: Unready) -> None:
    store.interrupt, store.gate = None, None
    lease = km.acquire("m", 10)
    assert lease.reservation is not None and not lease.reservation.store.is_embedded
    assert held(km) == 1
    lease.release()
    assert held(km) == 0


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_an_interrupt_while_failing_open_on_a_stalled_redis_leaves_nothing(
    server: RedisProcess, interrupt: type[BaseException]
) -> None:
    km, store = _manager(server.url)
    try:
        store.interrupt = interrupt()
        stalled = _stall(server.url, 3)
        with pytest.raises(interrupt):
            km.acquire("m", 10)  # times out on Redis, fails open, interrupted reading
        assert store.entered.is_set()
        stalled.join()
        assert not km.store.primary_down  # slow, not lost
        # the acquire Redis ran after its stall: released (same request id, resent)
        assert eventually(lambda: held(km) == 0), held(km)
        _serves_as_before(km, store)
    finally:
        km.close()


def test_an_interrupt_while_failing_open_on_a_dead_redis_leaves_nothing(
    server: RedisProcess,
) -> None:
    km, store = _manager(server.url)
    try:
        store.interrupt = KeyboardInterrupt()
        server.stop()
        with pytest.raises(KeyboardInterrupt):
            km.acquire("m", 10)
        assert store.entered.is_set()
        server.start()  # empty: nothing of this process's to write back either
        assert eventually(lambda: not _raises(lambda: held(km)) and held(km) == 0)
        _serves_as_before(km, store)
    finally:
        km.close()


def _raises(fn: Callable[[], object]) -> bool:
    try:
        fn()
    except Exception:
        return True
    return False


async def test_a_task_cancelled_while_failing_open_leaves_nothing(server: RedisProcess) -> None:
    km, store = _manager(server.url)
    gate = store.gate = threading.Event()
    try:
        stalled = _stall(server.url, 3)
        task = asyncio.ensure_future(km.aacquire("m", 10))
        for _ in range(1000):  # until the fail-open lease's secret read has started
            if store.entered.is_set():
                break
            await asyncio.sleep(0.01)
        assert store.entered.is_set()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gate.set()
        await asyncio.to_thread(stalled.join)
        assert await asyncio.to_thread(eventually, lambda: held(km) == 0)
        await asyncio.to_thread(_serves_as_before, km, store)
    finally:
        gate.set()
        await km.aclose()
