"""Worker functions for multi-process tier tests (imported by spawned processes)."""

from __future__ import annotations

import time
from typing import Any

from rotating_llm import AllKeysExhaustedError, APIKey, KeyManager, Lease, Settings
from rotating_llm.secrets import EnvSecretStore


def build(redis_url: str, prefix: str, keys: list[dict[str, Any]], window: float) -> KeyManager:
    """A manager of ``keys`` (dumped ``APIKey``s) on the Redis at ``redis_url``."""
    objs = [APIKey.model_validate(k) for k in keys]
    secrets = {f"API_KEY_{k.key_id.upper()}": f"s-{k.key_id}" for k in objs}
    settings = Settings(redis_url=redis_url, key_prefix=prefix, window_seconds=window)
    return KeyManager(objs, settings=settings, secret_store=EnvSecretStore(secrets))


def paced(
    redis_url: str, prefix: str, keys: list[dict[str, Any]], window: float, duration: float,
    pause: float,
) -> list[tuple[str, int]]:  # fmt: skip
    """Acquire, complete and pause, for ``duration`` seconds; (key_id, granted_at_us) each."""
    km = build(redis_url, prefix, keys, window)
    end = time.monotonic() + duration
    grants: list[tuple[str, int]] = []
    while time.monotonic() < end:
        lease = km.acquire("m", 1, max_wait=2 * window)
        assert lease.reservation is not None
        grants.append((lease.key_id, lease.reservation.granted_at_us))
        lease.complete(1)
        time.sleep(pause)
    km.close()
    return grants


def hold(
    redis_url: str, prefix: str, keys: list[dict[str, Any]], window: float, duration: float
) -> list[tuple[str, int]]:
    """Acquire with waiting for ``duration`` seconds, never settling (each grant holds its
    slot a full window from its grant instant); (key_id, granted_at_us) of each grant."""
    km = build(redis_url, prefix, keys, window)
    end = time.monotonic() + duration
    held: list[Lease] = []
    while time.monotonic() < end:
        try:
            held.append(km.acquire("m", 1, max_wait=max(0.0, end - time.monotonic())))
        except AllKeysExhaustedError:
            break
    km.close()
    return [(lease.key_id, lease.reservation.granted_at_us) for lease in held if lease.reservation]
