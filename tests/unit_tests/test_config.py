"""Settings come from the seed's environment variables, read when needed, with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from rotating_llm import ConfigError, Settings


def test_defaults_follow_the_seed() -> None:
    s = Settings.from_env({})
    assert s.redis_url is None
    assert s.secret_store_type == "env"
    assert s.key_store_path == Path("keys.json")
    assert s.conversation_ttl_seconds == 86400
    assert s.user_rpm_default == 10 and s.global_rpm_max == 1000
    assert s.router_enabled is True  # rotation unless the flag says false
    assert s.window_seconds == 60 and s.on_store_failure == "local"
    assert s.rpd_timezone == "America/Los_Angeles"


def test_environment_is_read_when_called(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://example:6379/1")
    monkeypatch.setenv("LLM_MULTI_KEY_ROUTER_ENABLED", "false")
    monkeypatch.setenv("KEY_STORE_PATH", "/etc/keys.json")
    s = Settings.from_env()
    assert s.redis_url == "redis://example:6379/1"
    assert s.router_enabled is False
    assert s.key_store_path == Path("/etc/keys.json")
    monkeypatch.setenv("REDIS_URL", "redis://other:6379/0")
    assert Settings.from_env().redis_url == "redis://other:6379/0"


def test_sticky_keys_settings() -> None:
    assert Settings().sticky_keys is True and Settings().affinity_ttl_seconds == 3600
    s = Settings.from_env(
        {"ROTATING_LLM_STICKY_KEYS": "false", "ROTATING_LLM_AFFINITY_TTL_SECONDS": "90"}
    )
    assert s.sticky_keys is False and s.affinity_ttl_seconds == 90


def test_overrides_win() -> None:
    s = Settings.from_env({"ROTATING_LLM_WINDOW_SECONDS": "60"}, window_seconds=2)
    assert s.window_seconds == 2


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("SECRET_STORE_TYPE", "keychain"),
        ("ROTATING_LLM_WINDOW_SECONDS", "-1"),
        ("ROTATING_LLM_RPD_TIMEZONE", "Mars/Olympus"),
        ("ROTATING_LLM_ON_REDIS_FAILURE", "maybe"),
        ("CONVERSATION_TTL_SECONDS", "soon"),
        ("ROTATING_LLM_KEY_PREFIX", "a{b}"),
        ("ROTATING_LLM_AFFINITY_TTL_SECONDS", "0"),
        ("ROTATING_LLM_AFFINITY_TTL_SECONDS", str(7 * 86400 + 1)),
        ("ROTATING_LLM_STICKY_KEYS", "sometimes"),
    ],
)
def test_bad_values_name_the_variable(var: str, value: str) -> None:
    with pytest.raises(ConfigError, match=var):
        Settings.from_env({var: value})


def test_vault_token_is_never_shown() -> None:
    s = Settings.from_env({"VAULT_TOKEN": "hvs.supersecrettoken123"})
    assert "supersecrettoken" not in repr(s)
    assert "supersecrettoken" not in str(s.model_dump())
