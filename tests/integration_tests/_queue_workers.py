"""Worker functions for the queue's multi-process tests (imported by spawned processes)."""

from __future__ import annotations

import threading
import time
from typing import Any

from rotating_llm import AllKeysExhaustedError, APIKey, KeyManager, Settings
from rotating_llm.secrets import EnvSecretStore


def build(
    redis_url: str, prefix: str, keys: list[dict[str, Any]], window: float, cluster: bool = False
) -> KeyManager:
    api_keys = [APIKey.model_validate(k) for k in keys]
    secrets = {f"API_KEY_{k.key_id.upper()}": f"s-{k.key_id}" for k in api_keys}
    settings = Settings(
        redis_url=redis_url,
        redis_cluster=cluster,
        key_prefix=prefix,
        window_seconds=window,
        max_wait=0,
        queue_ticket_seconds=1.0,
    )
    return KeyManager(api_keys, settings=settings, secret_store=EnvSecretStore(secrets))


def wait_all(
    redis_url: str,
    prefix: str,
    keys: list[dict[str, Any]],
    window: float,
    specs: list[tuple[int, str | None]],
    max_wait: float,
    cluster: bool = False,
) -> list[tuple[int, str | None, int]]:
    """One thread per (priority, tenant) in ``specs``, started in order, each acquiring
    once with waiting and releasing (its slot goes to the next waiter): (priority,
    tenant, granted_at_us) of each grant."""
    km = build(redis_url, prefix, keys, window, cluster)
    model = keys[0]["model_name"]
    km.limiter.register_all()
    out: list[tuple[int, str | None, int]] = []
    lock = threading.Lock()

    def one(priority: int, tenant: str | None) -> None:
        try:
            lease = km.acquire(model, 1, max_wait=max_wait, priority=priority, tenant=tenant)
        except AllKeysExhaustedError:
            return
        assert lease.reservation is not None
        with lock:
            out.append((priority, tenant, lease.reservation.granted_at_us))
        lease.release()

    threads = [threading.Thread(target=one, args=spec) for spec in specs]
    for t in threads:
        t.start()
        time.sleep(0.003)  # (arrivals in order, mostly: only tenants' turns are checked)
    for t in threads:
        t.join()
    km.close()
    return out


def wait_once(redis_url: str, prefix: str, keys: list[dict[str, Any]], window: float) -> None:
    """Wait for one grant for a minute (the test kills this process meanwhile)."""
    km = build(redis_url, prefix, keys, window)
    km.acquire(keys[0]["model_name"], 1, max_wait=60)


def wait_excluding(
    redis_url: str, prefix: str, keys: list[dict[str, Any]], window: float, exclude: list[str]
) -> str:
    """Wait for one grant for a minute, excluding ``exclude``: the key granted."""
    km = build(redis_url, prefix, keys, window)
    lease = km.acquire(keys[0]["model_name"], 1, max_wait=60, exclude=exclude)
    lease.release()
    km.close()
    return lease.key_id


def keep_acquiring(
    redis_url: str,
    prefix: str,
    keys: list[dict[str, Any]],
    window: float,
    duration: float,
    priorities: list[int],
) -> list[tuple[str, int]]:
    """One thread per priority acquiring with waiting for ``duration`` seconds: every
    grant's (key_id, granted_at_us)."""
    km = build(redis_url, prefix, keys, window)
    model = keys[0]["model_name"]
    end = time.monotonic() + duration
    grants: list[tuple[str, int]] = []
    lock = threading.Lock()

    def run(priority: int) -> None:
        while time.monotonic() < end:
            try:
                lease = km.acquire(
                    model, 1, max_wait=max(0.0, end - time.monotonic()), priority=priority
                )
            except AllKeysExhaustedError:
                break
            assert lease.reservation is not None
            with lock:
                grants.append((lease.key_id, lease.reservation.granted_at_us))
            lease.complete(1)

    threads = [threading.Thread(target=run, args=(p,)) for p in priorities]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    km.close()
    return grants
