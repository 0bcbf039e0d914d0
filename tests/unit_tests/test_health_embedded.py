"""health_check on the embedded store: the real scripts run, no heartbeat is kept."""

from __future__ import annotations

import uuid

from rotating_llm import APIKey, KeyManager, Settings
from rotating_llm.secrets import EnvSecretStore


def _km(prefix: str = "") -> KeyManager:
    keys = [
        APIKey(key_id=f"k{i}", model_name="m", provider="gemini", rpm=2, tpm=1000) for i in range(2)
    ]
    return KeyManager(
        keys,
        settings=Settings(
            redis_url=None, max_wait=0, key_prefix=prefix or f"u{uuid.uuid4().hex[:8]}:"
        ),
        secret_store=EnvSecretStore(environ={"API_KEY_K0": "s0", "API_KEY_K1": "s1"}),
    )


def test_embedded_health_is_mode_embedded_without_processes() -> None:
    km = _km()
    report = km.health_check()
    assert km._heartbeat is None
    km.close()
    assert report["healthy"] is True and report["mode"] == "embedded"
    assert report["live_processes"] is None
    assert report["pools"]["m"] == {"active_keys": 2, "cooling_keys": 0, "can_admit_now": True}


def test_embedded_health_names_a_pool_with_every_key_disabled() -> None:
    km = _km()
    km.disable_key("k0")
    km.mark_key_unhealthy("k1", 60)
    report = km.health_check()
    km.close()
    assert report["healthy"] is True  # a cooling key still counts: it returns by itself
    assert report["pools"]["m"]["cooling_keys"] == 1
    km = _km()
    km.disable_key("k0")
    km.disable_key("k1")
    report = km.health_check()
    km.close()
    assert report["healthy"] is False
    assert report["problems"] == ["pool 'm': no active keys (every key disabled or removed)"]
