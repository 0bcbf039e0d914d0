"""Worker functions for multi-process limiter tests (imported by spawned processes)."""

from __future__ import annotations

import time
from typing import Any

from rotating_llm import AllKeysExhaustedError, APIKey, KeyManager, Settings
from rotating_llm.secrets import EnvSecretStore


def build(redis_url: str, prefix: str, keys: list[dict[str, Any]], window: float) -> KeyManager:
    api_keys = [APIKey.model_validate(k) for k in keys]
    secrets = {f"API_KEY_{k.key_id.upper()}": f"s-{k.key_id}" for k in api_keys}
    settings = Settings(redis_url=redis_url, key_prefix=prefix, window_seconds=window, max_wait=0)
    return KeyManager(api_keys, settings=settings, secret_store=EnvSecretStore(secrets))


def burst_until_refused(
    redis_url: str, prefix: str, keys: list[dict[str, Any]], window: float, start_at: float
) -> list[tuple[str, int]]:
    """Acquire with max_wait=0 until refused; return (key_id, granted_at_us) of each grant."""
    km = build(redis_url, prefix, keys, window)
    model = keys[0]["model_name"]
    km.limiter.register_all()
    while time.time() < start_at:
        time.sleep(0.001)
    grants: list[tuple[str, int]] = []
    while True:
        try:
            lease = km.acquire(model, 1, max_wait=0)
        except AllKeysExhaustedError:
            break
        assert lease.reservation is not None
        grants.append((lease.key_id, lease.reservation.granted_at_us))
        lease.complete(1)
    km.close()
    return grants


def keep_acquiring(
    redis_url: str, prefix: str, keys: list[dict[str, Any]], window: float, duration: float
) -> list[tuple[str, int]]:
    """Acquire with waiting for ``duration`` seconds; return every grant."""
    km = build(redis_url, prefix, keys, window)
    model = keys[0]["model_name"]
    end = time.monotonic() + duration
    grants: list[tuple[str, int]] = []
    while time.monotonic() < end:
        try:
            lease = km.acquire(model, 1, max_wait=max(0.0, end - time.monotonic()))
        except AllKeysExhaustedError:
            break
        assert lease.reservation is not None
        grants.append((lease.key_id, lease.reservation.granted_at_us))
        lease.complete(1)
    km.close()
    return grants
