"""Worker for the multi-process tenant-cap tests (imported by spawned processes)."""

from __future__ import annotations

import time
from typing import Any

from rotating_llm import APIKey, KeyManager, Settings
from rotating_llm.errors import AllKeysExhaustedError
from rotating_llm.keys.models import TenantCap
from rotating_llm.secrets import EnvSecretStore

#: Secrets of the keys k0..k9 (never sent anywhere: no provider is called).
SECRETS = {f"API_KEY_K{i}": f"sk-test-{i}" for i in range(10)}


def grab(
    redis_url: str,
    prefix: str,
    keys: list[dict[str, Any]],
    caps: list[dict[str, Any]],
    tenants: list[str],
    start_at: float,
    settings: dict[str, Any] | None = None,
) -> list[tuple[str, bool, dict[str, str]]]:
    """Acquire once (max_wait=0) for each of ``tenants``; no lease is settled."""
    manager = KeyManager(
        [APIKey(**k) for k in keys],
        tenant_caps=[TenantCap(**c) for c in caps],
        settings=Settings(
            redis_url=redis_url,
            key_prefix=prefix,
            window_seconds=60,
            max_wait=0,
            **(settings or {}),
        ),
        secret_store=EnvSecretStore(SECRETS),
        probe=False,
    )
    while time.time() < start_at:
        time.sleep(0.001)
    out: list[tuple[str, bool, dict[str, str]]] = []
    for tenant in tenants:
        try:
            manager.acquire("m", 10, max_wait=0, tenant=tenant)
            out.append((tenant, True, {}))
        except AllKeysExhaustedError as exc:
            out.append((tenant, False, dict(exc.reasons)))
    manager.close()
    return out
