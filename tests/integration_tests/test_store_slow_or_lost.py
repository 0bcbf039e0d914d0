"""Slow is not lost: a Redis really slowed (``DEBUG SLEEP``, ``CLIENT PAUSE``) is waited
for within the caller's deadline and never failed over from; a Redis really killed is
failed over from at once and returned to by itself. Each test runs its own
``redis-server``. Call times are checked against a generous bound computed from the
settings (``max_wait + store_deadline + 1 s``), never as a speed claim."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
import redis
from _redis_server import RedisProcess
from _stalls import held, stall

from conftest import make_keys, secrets_for
from rotating_llm import AllKeysExhaustedError, KeyManager, Settings, StoreTimeoutError
from rotating_llm.secrets import EnvSecretStore
from rotating_llm.storage._direct import ping_fresh

pytestmark = [pytest.mark.redis, pytest.mark.slow]

SLACK = 1.0  # the generous part of every bound on a call's time


@pytest.fixture
def server(own_redis: RedisProcess) -> RedisProcess:
    """The test's own redis-server (the shared ``own_redis`` fixture)."""
    return own_redis


def _manager(url: str, **opts: Any) -> KeyManager:
    keys = make_keys(2, rpm=5)
    base: dict[str, Any] = {
        "redis_url": url,
        "window_seconds": 60,
        "max_wait": 0,
        "store_retry_interval": 0.2,
        "heartbeat_seconds": 0,
    }
    settings = Settings(**{**base, **opts})
    return KeyManager(keys, settings=settings, secret_store=EnvSecretStore(secrets_for(keys)))


def _stall(url: str, command: tuple[Any, ...]) -> threading.Thread:
    return stall(redis.Redis.from_url(url, socket_timeout=60), *command)


def _bound(km: KeyManager, max_wait: float) -> float:
    return max_wait + km.settings.store_deadline + SLACK


def test_the_probe_waits_its_timeout_once_for_connect_and_reply(server: RedisProcess) -> None:
    """A stalled Redis accepts the probe's connection but answers neither its handshake
    nor its ``PING``: both share the one timeout (each waited a timeout of its own
    before: 2 s here), and a refused connection is told apart at once."""
    client = redis.Redis.from_url(server.url)
    try:
        ping_fresh(client, 1.0)  # answered
        stalled = _stall(server.url, ("DEBUG", "SLEEP", "2.5"))
        t0 = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            ping_fresh(client, 1.0)
        took = time.monotonic() - t0
        stalled.join()
        assert took < 1.5, took  # one timeout (1 s), not two
        server.stop()
        with pytest.raises(redis.ConnectionError):
            ping_fresh(client, 1.0)
    finally:
        client.close()


def test_a_refusal_does_not_wait_for_another_threads_completions(server: RedisProcess) -> None:
    """A refused acquire applies this process's outstanding completions first, within
    its own deadline: while another thread holds them (reading a slow Redis's replies
    without a deadline of its own, say) it reports the refusal at its bound instead of
    waiting for that thread (it waited until the thread let go: 5 s here)."""
    other: threading.Timer | None = None
    km = _manager(server.url, store_deadline=0.5, store_lost_after=8.0)
    settler = km.limiter._settler
    try:
        leases = [km.acquire("m") for _ in range(10)]  # the pool (2 keys x 5) is full
        leases[0].complete(1)  # written, its reply not read yet
        assert settler.pending > 0
        settler._lock.acquire()  # another thread's read, let go of after 5 s at most
        other = threading.Timer(5.0, settler._lock.release)
        other.start()
        t0 = time.monotonic()
        with pytest.raises(AllKeysExhaustedError):
            km.acquire("m", max_wait=0)
        took = time.monotonic() - t0
        assert took <= 0.5 + 0.25, took  # max_wait 0 + the store deadline + a margin
    finally:
        if other is not None:
            other.cancel()
            other.join()
            if settler._lock.locked():  # (the timer did not run)
                settler._lock.release()
        km.close()


def test_a_sleeping_redis_is_waited_for_not_failed_over(server: RedisProcess) -> None:
    km = _manager(server.url, store_deadline=1.0, store_lost_after=8.0)
    try:
        km.acquire("m", max_wait=0).complete()  # connections open, pool registered
        stalled = _stall(server.url, ("DEBUG", "SLEEP", "2"))
        t0 = time.monotonic()
        lease = km.acquire("m", max_wait=4)  # the caller allows more than the stall
        took = time.monotonic() - t0
        stalled.join()
        assert lease.reservation is not None and not lease.reservation.store.is_embedded
        assert not km.store.primary_down
        assert took <= _bound(km, 4)
        assert held(km) == 2  # the warm-up and this one: sent once, kept once
    finally:
        km.close()


def test_a_stall_past_the_deadline_raises_store_timeout_and_leaves_nothing(
    server: RedisProcess,
) -> None:
    km = _manager(server.url, store_deadline=0.5, store_lost_after=8.0)
    try:
        km.acquire("m").complete()
        stalled = _stall(server.url, ("DEBUG", "SLEEP", "2.5"))
        t0 = time.monotonic()
        with pytest.raises(StoreTimeoutError, match="slow, not lost"):
            km.acquire("m", max_wait=0)
        took = time.monotonic() - t0
        stalled.join()
        assert took <= _bound(km, 0)
        assert not km.store.primary_down  # slow is not lost: no failover
        # the script still ran once the stall ended: what it granted is released
        for _ in range(100):
            if held(km) == 1:
                break
            time.sleep(0.05)
        assert held(km) == 1  # only the warm-up's (completed) reservation
        assert not km.acquire("m").reservation.store.is_embedded  # type: ignore[union-attr]
    finally:
        km.close()


def test_client_pause_of_writes_answers_probes_so_no_failover(server: RedisProcess) -> None:
    """Writes paused past ``store_lost_after`` and past redis-py's usual 5 s socket
    timeout: the probe's PING still answers, so the caller waits on the same Redis and
    is served there."""
    km = _manager(server.url, store_deadline=1.0, store_lost_after=0.5)
    try:
        km.acquire("m").complete()
        redis.Redis.from_url(server.url).execute_command("CLIENT", "PAUSE", "5500", "WRITE")
        t0 = time.monotonic()
        lease = km.acquire("m", max_wait=7)
        took = time.monotonic() - t0
        assert lease.reservation is not None and not lease.reservation.store.is_embedded
        assert not km.store.primary_down
        assert took <= _bound(km, 7)
        assert held(km) == 2
    finally:
        km.close()


def test_a_redis_silent_past_lost_after_is_failed_over(server: RedisProcess) -> None:
    km = _manager(server.url, store_deadline=1.0, store_lost_after=0.5)
    try:
        km.acquire("m").complete()
        stalled = _stall(server.url, ("DEBUG", "SLEEP", "3"))
        t0 = time.monotonic()
        lease = km.acquire("m", max_wait=4)
        took = time.monotonic() - t0
        assert lease.reservation is not None and lease.reservation.store.is_embedded
        assert km.store.primary_down
        assert took <= _bound(km, 4)
        stalled.join()
        time.sleep(0.3)
        back = km.acquire("m")
        assert back.reservation is not None and not back.reservation.store.is_embedded
        # the warm-up, the degraded grant (written back) and this one; the acquire that
        # Redis ran after the stall, for a caller already served elsewhere, is released
        assert held(km) == 3
    finally:
        km.close()


def test_a_killed_redis_fails_over_at_once_and_comes_back(server: RedisProcess) -> None:
    km = _manager(server.url, store_deadline=1.0, store_lost_after=3.0)
    try:
        km.acquire("m").complete()
        server.stop()
        t0 = time.monotonic()
        lease = km.acquire("m", max_wait=0)
        took = time.monotonic() - t0
        assert lease.reservation is not None and lease.reservation.store.is_embedded
        assert took <= _bound(km, 0)
        server.start()
        for _ in range(100):  # the next probe finds it
            back = km.acquire("m")
            if back.reservation is not None and not back.reservation.store.is_embedded:
                break
            time.sleep(0.05)
        assert back.reservation is not None and not back.reservation.store.is_embedded
        assert not km.store.primary_down
    finally:
        km.close()


def test_async_callers_wait_for_a_slow_redis_and_time_out_past_it(
    server: RedisProcess,
) -> None:
    km = _manager(server.url, store_deadline=0.5, store_lost_after=8.0)

    async def main() -> tuple[Any, float, BaseException | None, float]:
        (await km.aacquire("m")).complete()
        stalled = _stall(server.url, ("DEBUG", "SLEEP", "2"))
        t0 = time.monotonic()
        patient, impatient = await asyncio.gather(
            km.aacquire("m", max_wait=4), km.aacquire("m", max_wait=0), return_exceptions=True
        )
        took = time.monotonic() - t0
        stalled.join()
        await km.limiter.aflush()
        return patient, took, impatient if isinstance(impatient, BaseException) else None, t0

    try:
        patient, took, impatient, _ = asyncio.run(main())
        assert patient.reservation is not None and not patient.reservation.store.is_embedded
        assert isinstance(impatient, StoreTimeoutError)
        assert not km.store.primary_down
        assert took <= _bound(km, 4)
        assert held(km) == 2  # warm-up and the patient one; the other released
    finally:
        km.close()


def test_async_callers_fail_over_from_a_killed_redis(server: RedisProcess) -> None:
    km = _manager(server.url, store_deadline=1.0, store_lost_after=3.0)

    async def main() -> tuple[list[Any], float]:
        (await km.aacquire("m")).complete()
        server.stop()
        t0 = time.monotonic()
        leases = await asyncio.gather(*(km.aacquire("m") for _ in range(3)))
        return list(leases), time.monotonic() - t0

    try:
        leases, took = asyncio.run(main())
        assert all(le.reservation.store.is_embedded for le in leases)
        assert km.store.primary_down
        assert took <= _bound(km, 0)
    finally:
        km.close()
