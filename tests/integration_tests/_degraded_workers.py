"""A worker of the degraded-share tests: a long-lived manager that takes every grant it
can, phase by phase, as the test's control files say (spawned processes); with a
``tenant_rpm``, every request is tenant ``TENANT``'s, capped at that."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rotating_llm import AllKeysExhaustedError, KeyManager, Settings, StoreError
from rotating_llm.keys import APIKey
from rotating_llm.keys.models import TenantCap
from rotating_llm.secrets import EnvSecretStore

KEYS = 2
RPM = 6
WINDOW = 30.0
TENANT = "alice@example.com"


def _manager(url: str, prefix: str, tenant_rpm: int = 0) -> KeyManager:
    keys = [
        APIKey(key_id=f"k{i}", model_name="m", provider="gemini", rpm=RPM, tpm=10**6)
        for i in range(KEYS)
    ]
    settings = Settings(
        redis_url=url,
        key_prefix=prefix,
        window_seconds=WINDOW,
        max_wait=0,
        heartbeat_seconds=0.2,
        store_retry_interval=0.2,
        store_lost_after=1.0,
        probe_seconds=0,
    )
    env = {f"API_KEY_K{i}": f"sk-test-{i}" for i in range(KEYS)}
    caps = [TenantCap(tenant=TENANT, rpm=tenant_rpm)] if tenant_rpm else None
    return KeyManager(
        keys, tenant_caps=caps, settings=settings, secret_store=EnvSecretStore(environ=env)
    )


def _wait(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {path.name}")
        time.sleep(0.02)


def _take(
    km: KeyManager, phase: str, seconds: float, out: list[dict[str, Any]], tenant: str | None
) -> None:
    """Acquire as fast as allowed for ``seconds``; every grant recorded (and completed)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            lease = km.acquire("m", max_wait=0, tenant=tenant)
        except (AllKeysExhaustedError, StoreError):
            time.sleep(0.02)
            continue
        res = lease.reservation
        assert res is not None
        out.append(
            {
                "phase": phase,
                "key": lease.key_id,
                "t": time.time(),
                "embedded": res.store.is_embedded,
            }
        )
        lease.complete(1)


def worker(
    url: str,
    prefix: str,
    control: str,
    wid: int,
    first: int,
    phases: list[tuple[str, float]],
    tenant_rpm: int = 0,
) -> list[dict[str, Any]]:
    """Phase ``before``: ``first`` grants on Redis; then each of ``phases`` (name,
    seconds) once its control file appears: every grant it can for that long."""
    ctl = Path(control)
    km = _manager(url, prefix, tenant_rpm)
    tenant = TENANT if tenant_rpm else None
    out: list[dict[str, Any]] = []
    try:
        (ctl / f"ready-{wid}").touch()
        _wait(ctl / "before")
        for _ in range(first):
            lease = km.acquire("m", max_wait=0, tenant=tenant)
            out.append(
                {"phase": "before", "key": lease.key_id, "t": time.time(), "embedded": False}
            )
            lease.complete(1)
        (ctl / f"before-{wid}").touch()
        for name, seconds in phases:
            _wait(ctl / name)
            _take(km, name, seconds, out, tenant)
            (ctl / f"{name}-{wid}").touch()
    finally:
        km.close()
    return out
