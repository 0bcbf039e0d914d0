"""Redis lost at run time: local (default), allow and deny modes, and automatic recovery."""

from __future__ import annotations

import threading
import time

import pytest
from _redis_server import RedisProcess

from conftest import make_keys, secrets_for
from rotating_llm import AllKeysExhaustedError, KeyManager, Settings, StoreUnavailableError
from rotating_llm.secrets import EnvSecretStore

pytestmark = pytest.mark.redis


@pytest.fixture
def server(own_redis: RedisProcess) -> RedisProcess:
    """The test's own redis-server (the shared ``own_redis`` fixture)."""
    return own_redis


def manager(url: str, mode: str) -> KeyManager:
    keys = make_keys(2, rpm=3)
    settings = Settings(
        redis_url=url, on_store_failure=mode, store_retry_interval=0.2, window_seconds=30,
        max_wait=0,
    )
    return KeyManager(keys, settings=settings, secret_store=EnvSecretStore(secrets_for(keys)))


def test_local_mode_keeps_limits_in_process_and_recovers(server: RedisProcess) -> None:
    km = manager(server.url, "local")
    assert not km.acquire("m").reservation.store.is_embedded
    server.stop()
    # same rules, in process; its grant on Redis in this window counts against them
    leases = [km.acquire("m") for _ in range(5)]
    assert all(le.reservation.store.is_embedded for le in leases)
    assert km.store.primary_down
    with pytest.raises(Exception) as info:
        km.acquire("m")
    assert type(info.value).__name__ == "AllKeysExhaustedError"
    for le in leases:
        le.complete()  # settles on the store it was made on
    server.start()  # empty: the grants of this window are written back to it
    time.sleep(0.3)
    with pytest.raises(AllKeysExhaustedError):
        km.acquire("m")
    assert not km.store.primary_down  # recovered, pool re-registered, window still full
    assert sum(u.rpm_count for u in km.limiter.usage("m").values()) == 6
    km.close()


def test_allow_mode_fails_open(server: RedisProcess) -> None:
    km = manager(server.url, "allow")
    server.stop()
    lease = km.acquire("m")
    assert lease.reserved is False and lease.key_id in {"k0", "k1"}
    lease.complete(10)  # nothing to settle, no error
    assert lease.outcome == "complete"
    km.close()


def test_deny_mode_raises_the_librarys_error(server: RedisProcess) -> None:
    km = manager(server.url, "deny")
    km.acquire("m").complete()
    server.stop()
    with pytest.raises(StoreUnavailableError, match="unavailable") as info:
        km.acquire("m")
    assert "127.0.0.1" in str(info.value)
    server.start()
    time.sleep(0.3)
    km.acquire("m").complete()
    km.close()


def test_health_check_reports_a_dead_store(server: RedisProcess) -> None:
    km = manager(server.url, "local")
    assert km.health_check()["healthy"] is True
    server.stop()
    report = km.health_check()
    assert report["healthy"] is False and report["store_ok"] is False
    assert "ConnectionError" in report["error"]
    km.close()


def test_store_flushed_under_a_live_manager(server: RedisProcess) -> None:
    km = manager(server.url, "local")
    km.acquire("m").complete()
    import redis

    redis.Redis.from_url(server.url).flushall()
    lease = km.acquire("m")  # the pool is registered again on the fly
    assert not lease.reservation.store.is_embedded
    km.close()


def test_close_waits_for_background_work_on_the_in_process_store(server: RedisProcess) -> None:
    """Closing waits for what runs in the background (building the in-process store,
    releasing an abandoned grant) before it closes the clients that work uses; nothing
    starts after it."""
    km = manager(server.url, "local")
    fb = km.store.fallback
    errors: list[Exception] = []
    done = threading.Event()

    def work() -> None:
        try:
            end = time.monotonic() + 0.5
            while time.monotonic() < end:
                fb.sync.ping()
        except Exception as exc:  # closed under it
            errors.append(exc)
        finally:
            done.set()

    km.store.in_background(work, "test-background")
    km.close()
    assert done.is_set() and errors == []
    km.store.in_background(lambda: errors.append(RuntimeError("ran")), "test-late")
    km.store._warm_fallback()
    time.sleep(0.1)
    assert errors == []
    assert not any(t.name == "rotating-llm-fallback" for t in threading.enumerate())
