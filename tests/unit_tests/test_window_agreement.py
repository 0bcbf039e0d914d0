"""A manager pointed at a simulator of this process with another window says so at start."""

from __future__ import annotations

import logging

import pytest

from rotating_llm import APIKey, KeyManager, Settings
from rotating_llm.secrets import EnvSecretStore
from rotating_llm.testing import FakeProvider


def _manager(url: str, window: float) -> KeyManager:
    key = APIKey(key_id="k0", model_name="m", provider="gemini", rpm=5, tpm=1000, base_url=url)
    return KeyManager(
        [key],
        settings=Settings(window_seconds=window, redact_logs=False),
        secret_store=EnvSecretStore({"API_KEY_K0": "sk-window-test-0000"}),
        probe=False,
    )


@pytest.mark.parametrize(("window", "warned"), [(60.0, True), (5.0, False)])
def test_window_mismatch_is_reported_at_start(caplog, window: float, warned: bool) -> None:
    with FakeProvider(rpm=5, window=5.0) as fp:
        caplog.set_level(logging.WARNING, logger="rotating_llm.keys")
        km = _manager(fp.url, window)
        km.close()
    said = [r.getMessage() for r in caplog.records if "simulator whose window" in r.getMessage()]
    assert bool(said) is warned
    if warned:
        assert "5s" in said[0] and "60s" in said[0] and "k0" in said[0]


def test_a_stopped_simulator_is_forgotten(caplog) -> None:
    with FakeProvider(rpm=5, window=5.0) as fp:
        url = fp.url
    caplog.set_level(logging.WARNING, logger="rotating_llm.keys")
    _manager(url, 60.0).close()
    assert not [r for r in caplog.records if "simulator whose window" in r.getMessage()]
