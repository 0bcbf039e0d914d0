"""A stalled Redis Cluster: no call blocks past ``max_wait`` plus one store deadline
(sync and async), the caller gets ``StoreTimeoutError`` (slow, not lost: no failover),
and the grant a stalled acquire made after all is released. A master stalled past the
cluster client's 5 s socket timeout (``DEBUG SLEEP``) is slow, not lost, for a caller
that allows more, while its probe is answered within ``store_lost_after``; silent past
that, it is lost and failed over from. The cluster is the local one
``rotating_llm.testing`` starts; every node is stalled with ``CLIENT PAUSE ALL``, or
the pool's master with ``DEBUG SLEEP``. Call times are checked against a bound
(``max_wait + store_deadline`` plus a margin), never as a speed claim."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from _redis_cluster import RedisClusterProcess
from _stalls import eventually, held, stall

from conftest import make_keys, secrets_for
from rotating_llm import KeyManager, Settings, StoreTimeoutError
from rotating_llm.secrets import EnvSecretStore

pytestmark = [pytest.mark.redis, pytest.mark.slow]

SLACK = 1.0
MAX_WAIT, DEADLINE = 0.5, 1.0
PAUSE_MS = 3000


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterProcess]:
    c = RedisClusterProcess(args=["--enable-debug-command", "yes"])
    c.start()
    yield c
    c.stop()


def _manager(url: str, prefix: str, **opts: Any) -> KeyManager:
    keys = make_keys(2, rpm=50)
    base: dict[str, Any] = {
        "redis_url": url,
        "redis_cluster": True,
        "key_prefix": prefix,
        "window_seconds": 60,
        "max_wait": MAX_WAIT,
        "store_deadline": DEADLINE,
        "store_retry_interval": 0.2,
        "heartbeat_seconds": 0,
    }
    settings = Settings(**{**base, **opts})
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


def test_a_stalled_cluster_bounds_a_sync_acquire(cluster: RedisClusterProcess, prefix: str) -> None:
    km = _manager(cluster.url, prefix)
    try:
        km.acquire("m").complete()  # connected, pool registered
        before = held(km)
        ends = _pause(cluster)
        t0 = time.monotonic()
        with pytest.raises(StoreTimeoutError):
            km.acquire("m")
        took = time.monotonic() - t0
        assert took <= MAX_WAIT + DEADLINE + SLACK, took
        assert not km.store.primary_down  # slow, not lost
        time.sleep(max(0.0, ends - time.monotonic()))
        assert eventually(lambda: held(km) == before), (held(km), before)
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
        assert eventually(lambda: held(km) == before), held(km)
    finally:
        km.close()


#: longer than the cluster client's socket timeout (5 s)
SLEEP_S = 6.5
LONG_WAIT = 8.0  # a caller that allows more than the stall
MARGIN = 0.25


def _sleep_pool_master(km: KeyManager) -> threading.Thread:
    """``DEBUG SLEEP`` the master holding the pool's slot (in the background)."""
    cluster = km.store.primary.sync
    node = cluster.get_node_from_key(km.store.primary.pool_keys("m")[0])
    client = redis.Redis(host=node.host, port=node.port, socket_timeout=30)
    return stall(client, "DEBUG", "SLEEP", SLEEP_S)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_master_stalled_past_the_socket_timeout_is_slow_not_lost(
    cluster: RedisClusterProcess, prefix: str, mode: str
) -> None:
    """The caller allows 8 s; the pool's master sleeps 6.5 s (past the client's 5 s
    socket timeout) and ``store_lost_after`` is 10 s: the call waits on the cluster and
    is served there, once (no failover, nothing reserved twice)."""
    km = _manager(cluster.url, prefix, store_lost_after=10.0)

    async def aacquire() -> Any:
        lease = await km.aacquire("m", max_wait=LONG_WAIT)
        await km.limiter.aflush()
        return lease

    try:
        km.acquire("m").complete()  # connected, pool registered
        stalled = _sleep_pool_master(km)
        t0 = time.monotonic()
        sync = mode == "sync"
        lease = km.acquire("m", max_wait=LONG_WAIT) if sync else asyncio.run(aacquire())
        took = time.monotonic() - t0
        stalled.join()
        assert lease.reservation is not None and not lease.reservation.store.is_embedded
        assert not km.store.primary_down
        assert took <= LONG_WAIT + DEADLINE + MARGIN, took
        assert held(km) == 2  # the warm-up and this one: kept once
    finally:
        km.close()


def test_a_master_silent_past_lost_after_is_failed_over(
    cluster: RedisClusterProcess, prefix: str
) -> None:
    """The same stall with ``store_lost_after`` 2 s: the probe finds the master silent
    for that long, so the cluster is lost and the caller is served in process within
    its bound; after the stall the cluster serves again and holds exactly the grants
    made (the one written back, not the stalled call's)."""
    km = _manager(cluster.url, prefix, store_lost_after=2.0)
    try:
        km.acquire("m").complete()
        stalled = _sleep_pool_master(km)
        t0 = time.monotonic()
        lease = km.acquire("m", max_wait=LONG_WAIT)
        took = time.monotonic() - t0
        assert lease.reservation is not None and lease.reservation.store.is_embedded
        assert km.store.primary_down
        assert took <= LONG_WAIT + DEADLINE + MARGIN, took
        stalled.join()
        lease.complete()

        since: list[KeyManager] = []

        def back() -> bool:
            le = km.acquire("m", max_wait=0)
            le.complete()
            since.append(km)
            return le.reservation is not None and not le.reservation.store.is_embedded

        assert eventually(back)
        assert not km.store.primary_down
        # the warm-up, the degraded grant (written back) and the grants since; not the
        # stalled call's, which the cluster ran after the stall: released
        assert eventually(lambda: held(km) == 2 + len(since)), (held(km), len(since))
    finally:
        km.close()
