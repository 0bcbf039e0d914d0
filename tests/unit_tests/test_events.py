"""Events from the pool: what metrics and logs subscribe to (embedded store, no network)."""

from __future__ import annotations

from typing import Any

import pytest

from rotating_llm import AllKeysExhaustedError, APIKey, FailureKind, KeyManager, Settings
from rotating_llm.events import add_listener, emit, remove_listener
from rotating_llm.secrets import EnvSecretStore


def test_events_of_a_lease_life() -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    def listener(name: str, fields: dict[str, Any]) -> None:
        seen.append((name, fields))

    keys = [APIKey(key_id="ev", model_name="m", provider="x", rpm=2, tpm=100)]
    km = KeyManager(keys, settings=Settings(window_seconds=30, max_wait=0),
                    secret_store=EnvSecretStore({"API_KEY_EV": "sk-events-secret-123"}))
    add_listener(listener)
    try:
        km.acquire("m", 10).complete(7)
        km.acquire("m", 10).fail(FailureKind.RATE_LIMIT, retry_after=5)
        with pytest.raises(AllKeysExhaustedError):
            km.acquire("m", 10)
    finally:
        remove_listener(listener)
    names = [n for n, _ in seen]
    assert names == [
        "lease.acquired", "lease.settled", "lease.acquired", "lease.settled", "key.cooldown",
        "lease.refused",
    ]
    assert seen[1][1] == {"model": "m", "key_id": "ev", "outcome": "complete", "tokens": 7}
    assert seen[4][1]["seconds"] == 5 and seen[4][1]["key_id"] == "ev"
    assert seen[5][1]["reason"] == "exhausted"
    assert "sk-events-secret" not in repr(seen)


def test_a_failing_listener_never_breaks_the_caller(caplog: pytest.LogCaptureFixture) -> None:
    def broken(name: str, fields: dict[str, Any]) -> None:
        raise RuntimeError("listener bug")

    add_listener(broken)
    try:
        emit("lease.waiting", model="m", seconds=1.0)
    finally:
        remove_listener(broken)
    assert "listener bug" in caplog.text
