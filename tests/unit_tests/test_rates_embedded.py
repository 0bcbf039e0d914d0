"""Served/429/refused counters on the embedded store (the same scripts, Lua 5.4)."""

from __future__ import annotations

import uuid

from rotating_llm import AllKeysExhaustedError, APIKey, FailureKind, KeyManager, Settings
from rotating_llm.keys.lease import Lease
from rotating_llm.limiter._rates import read_rates
from rotating_llm.secrets import EnvSecretStore


def _hold_until_refused(km: KeyManager) -> list[Lease]:
    """Acquire (and hold) what is left of the pool until the first refusal."""
    held: list[Lease] = []
    for _ in range(10):
        try:
            held.append(km.acquire("m", max_wait=0))
        except AllKeysExhaustedError:
            return held
    raise AssertionError("never refused")


def test_counts_served_429_and_refused_once_each() -> None:
    keys = [
        APIKey(key_id="a", model_name="m", provider="gemini", rpm=3, tpm=1000),
        APIKey(key_id="b", model_name="m", provider="gemini", rpm=1, tpm=1000),
    ]
    settings = Settings(redis_url=None, key_prefix=f"u{uuid.uuid4().hex[:8]}:", probe_seconds=0)
    env = {"API_KEY_A": "secret-a", "API_KEY_B": "secret-b"}
    km = KeyManager(keys, settings=settings, secret_store=EnvSecretStore(environ=env))
    first = km.acquire("m")
    first.complete()
    first.complete()  # settled once: the second is ignored
    km.acquire("m").complete(7)
    km.acquire("m").fail(FailureKind.RATE_LIMIT, retry_after=30)
    held = _hold_until_refused(km)
    for lease in held:
        lease.release()  # never reached the provider: not served
    rates = read_rates(km.store.primary, ["m"])["m"]
    assert rates["counts"] == {"served": 2, "rate_limited": 1, "refused": 1}
    assert sum(k.get("served", 0) for k in rates["keys"].values()) == 2
    assert sum(k.get("rate_limited", 0) for k in rates["keys"].values()) == 1
    assert rates["window_s"] == 300
    km.close()
