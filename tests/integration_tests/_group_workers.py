"""Worker functions for multi-process quota-group tests (imported by spawned processes)."""

from __future__ import annotations

import time
from typing import Any

from rotating_llm import AllKeysExhaustedError, APIKey, KeyManager, QuotaGroup, Settings
from rotating_llm.secrets import EnvSecretStore


def build(target: dict[str, Any], prefix: str, doc: dict[str, Any], window: float) -> KeyManager:
    """A manager of the keys and quota groups of ``doc`` on ``target`` (store settings)."""
    keys = [APIKey.model_validate(k) for k in doc["keys"]]
    groups = [QuotaGroup.model_validate(g) for g in doc["quota_groups"]]
    secrets = {f"API_KEY_{k.key_id.upper()}": f"s-{k.key_id}" for k in keys}
    settings = Settings(**target, key_prefix=prefix, window_seconds=window, max_wait=0)
    return KeyManager(
        keys, quota_groups=groups, settings=settings, secret_store=EnvSecretStore(secrets)
    )


def burst(
    target: dict[str, Any], prefix: str, doc: dict[str, Any], start_at: float, tokens: int
) -> list[tuple[str, int]]:
    """Acquire (10 tokens) without waiting until refused, completing each with ``tokens``;
    return (key_id, granted_at_us) of each grant."""
    km = build(target, prefix, doc, 60.0)
    km.limiter.register_all()
    while time.time() < start_at:
        time.sleep(0.001)
    grants: list[tuple[str, int]] = []
    while True:
        try:
            lease = km.acquire("m", 10, max_wait=0)
        except AllKeysExhaustedError:
            break
        assert lease.reservation is not None
        grants.append((lease.key_id, lease.reservation.granted_at_us))
        lease.complete(tokens)
    km.close()
    return grants


def keep_acquiring(
    target: dict[str, Any], prefix: str, doc: dict[str, Any], window: float, duration: float
) -> list[tuple[str, int]]:
    """Acquire with waiting for ``duration`` seconds; return every grant."""
    km = build(target, prefix, doc, window)
    end = time.monotonic() + duration
    grants: list[tuple[str, int]] = []
    while time.monotonic() < end:
        try:
            lease = km.acquire("m", 1, max_wait=max(0.0, end - time.monotonic()))
        except AllKeysExhaustedError:
            break
        assert lease.reservation is not None
        grants.append((lease.key_id, lease.reservation.granted_at_us))
        lease.complete(1)
    km.close()
    return grants
