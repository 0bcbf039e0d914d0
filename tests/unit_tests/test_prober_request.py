"""The prober's call for each provider, and its setting."""

from __future__ import annotations

import pytest

from rotating_llm import Settings
from rotating_llm.errors import ConfigError
from rotating_llm.keys import APIKey
from rotating_llm.keys._prober import _probe_request


def _key(provider: str, base_url: str | None) -> APIKey:
    return APIKey(
        key_id="k",
        model_name="gemini-2.5-flash",
        provider=provider,
        rpm=1,
        tpm=1,
        base_url=base_url,
    )


@pytest.mark.parametrize(
    ("provider", "base", "url"),
    [
        (
            "gemini",
            None,
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash",
        ),
        ("gemini", "http://sim:1", "http://sim:1/v1beta/models/gemini-2.5-flash"),
        ("gemini", "http://sim:1/v1beta", "http://sim:1/v1beta/models/gemini-2.5-flash"),
        ("openai", None, "https://api.openai.com/v1/models"),
        ("openai", "http://sim:1/v1", "http://sim:1/v1/models"),
    ],
)
def test_probe_url(provider: str, base: str | None, url: str) -> None:
    got, headers = _probe_request(_key(provider, base), "s3cret")
    assert got == url
    assert "s3cret" not in got  # the secret travels in a header, never in the URL
    assert any("s3cret" in v for v in headers.values())


def test_probe_seconds_setting() -> None:
    assert Settings.from_env({}).probe_seconds == 300
    assert Settings.from_env({"ROTATING_LLM_PROBE_SECONDS": "0"}).probe_seconds == 0
    with pytest.raises(ConfigError, match="ROTATING_LLM_PROBE_SECONDS"):
        Settings.from_env({"ROTATING_LLM_PROBE_SECONDS": "-1"})
