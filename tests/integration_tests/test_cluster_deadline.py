"""A stalled Redis Cluster: no call blocks past ``max_wait`` plus one store deadline
(sync and async), the caller gets ``StoreTimeoutError`` (slow, not lost: no failover),
and the grant a stalled acquire made after all is released. The cluster is the local
one ``rotating_llm.testing`` starts; every node is stalled with ``CLIENT PAUSE ALL``.
Call times are checked against a generous bound (``max_wait + store_deadline + 1 s``),
never as a speed claim."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest
import redis
from _redis_cluster import RedisClusterProcess

from conftest import make_keys, secrets_for
from rotating_llm import KeyManager, Settings, StoreTimeoutError
from rotating_llm.secrets import EnvSecretStore

pytestmark = [pytest.mark.redis, pytest.mark.slow]

SLACK = 1.0
MAX_WAIT, DEADLINE = 0.5, 1.0
PAUSE_MS = 3000


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterProcess]:
    c = RedisClusterProcess()
    c.start()
    yield c
    c.stop()


def _manager(url: str, prefix: str) -> KeyManager:
    keys = make_keys(2, rpm=50)
    settings = Settings(
        redis_url=url,
        redis_cluster=True,
        key_prefix=prefix,
        window_seconds=60,
        max_wait=MAX_WAIT,
        store_deadline=DEADLINE,
        store_retry_interval=0.2,
        heartbeat_seconds=0,
    )
    return KeyManager(
        keys, settings=settings, secret_store=EnvSecretStore(secrets_for(keys)), probe=False
    )


def _pause(cluster: RedisClusterProcess) -> float:
    """Stall every node for ``PAUSE_MS``; returns when the stall ends (monotonic)."""
    for port in cluster.ports:
        node = redis.Redis(host="127.0.0.1", port=port)
        node.execute_command("CLIENT", "PAUSE", str(PAUSE_MS), "ALL")
        node.close()
    return time.monotonic() + PAUSE_MS / 1000


def _held(km: KeyManager) -> int:
    return sum(u.rpm_count for u in km.limiter.usage("m").values())


def _eventually(cond: Callable[[], bool], timeout: float = 15.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


def test_a_stalled_cluster_bounds_a_sync_acquire(
    cluster: RedisClusterProcess, prefix: str
) -> None:
    km = _manager(cluster.url, prefix)
    try:
        km.acquire("m").complete()  # connected, pool registered
        before = _held(km)
        ends = _pause(cluster)
        t0 = time.monotonic()
        with pytest.raises(StoreTimeoutError):
            km.acquire("m")
        took = time.monotonic() - t0
        assert took <= MAX_WAIT + DEADLINE + SLACK, took
        assert not km.store.primary_down  # slow, not lost
        time.sleep(max(0.0, ends - time.monotonic()))
        assert _eventually(lambda: _held(km) == before), (_held(km), before)
        km.acquire("m").complete()  # serves as before, on the cluster
        assert not km.store.primary_down
    finally:
        km.close()


def test_a_stalled_cluster_bounds_an_async_acquire(
    cluster: RedisClusterProcess, prefix: str
) -> None:
    km = _manager(cluster.url, prefix)

    async def run() -> float:
        lease = await km.aacquire("m")
        await lease.acomplete()
        _pause(cluster)
        t0 = time.monotonic()
        with pytest.raises(StoreTimeoutError):
            await km.aacquire("m")
        took = time.monotonic() - t0
        await asyncio.sleep(PAUSE_MS / 1000)
        await km.limiter.aflush()  # the timed-out acquire's grant: released
        return took

    try:
        before = 1
        took = asyncio.run(run())
        assert took <= MAX_WAIT + DEADLINE + SLACK, took
        assert not km.store.primary_down
        assert _eventually(lambda: _held(km) == before), _held(km)
    finally:
        km.close()
