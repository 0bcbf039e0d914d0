"""Without REDIS_URL everything runs in-process on the same Lua scripts, and says so once."""

from __future__ import annotations

import logging

import pytest

from rotating_llm import AllKeysExhaustedError, APIKey, KeyManager, Settings, get_key_manager
from rotating_llm.secrets import EnvSecretStore
from rotating_llm.storage import _store


def keys(n: int = 2, rpm: int = 2) -> list[APIKey]:
    return [
        APIKey(key_id=f"e{i}", model_name="m", provider="gemini", rpm=rpm, tpm=1000)
        for i in range(n)
    ]


def build(**settings: object) -> KeyManager:
    ks = keys()
    env = {f"API_KEY_{k.key_id.upper()}": f"sk-embedded-{k.key_id}" for k in ks}
    return KeyManager(
        ks,
        settings=Settings(window_seconds=30, max_wait=0, **settings),  # type: ignore[arg-type]
        secret_store=EnvSecretStore(env),
    )


def test_same_rules_in_process() -> None:
    km = build()
    assert km.store.primary.is_embedded
    got = [km.acquire("m", 10).key_id for _ in range(4)]
    assert sorted(got) == ["e0", "e0", "e1", "e1"]
    with pytest.raises(AllKeysExhaustedError) as info:
        km.acquire("m", 10)
    assert 29 < info.value.retry_after <= 30
    assert info.value.reasons == {"e0": "rpm", "e1": "rpm"}


async def test_async_in_process() -> None:
    km = build()
    lease = await km.aacquire("m", 5)
    await lease.acomplete(3)
    assert km.limiter.get_tpm_usage(lease.key_id)["used"] == 3
    await km.aclose()


def test_announced_once(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_store, "_warned_embedded", False)
    with caplog.at_level(logging.WARNING, logger="rotating_llm.storage"):
        build()
        build()
    notes = [r for r in caplog.records if "within this process only" in r.getMessage()]
    assert len(notes) == 1
    assert "REDIS_URL" in notes[0].getMessage()


def test_get_key_manager_reads_key_store_path(tmp_path, monkeypatch) -> None:
    path = tmp_path / "keys.json"
    path.write_text(
        '{"keys": [{"key_id": "a", "model_name": "m", "provider": "gemini", "rpm": 1, "tpm": 5}]}'
    )
    monkeypatch.setenv("KEY_STORE_PATH", str(path))
    monkeypatch.delenv("REDIS_URL", raising=False)
    km = get_key_manager()
    assert [k.key_id for k in km.keys] == ["a"]
    assert get_key_manager() is km  # the default is kept
    other = get_key_manager(key_store_path=path)
    assert other is not km and get_key_manager() is other


def test_a_full_connection_pool_is_not_redis_lost() -> None:
    import redis.exceptions as rex

    from rotating_llm import StoreError, StoreUnavailableError
    from rotating_llm.storage import translate_errors

    for raw in (
        rex.MaxConnectionsError("Too many connections"),
        rex.ConnectionError("No connection available."),
    ):
        with (
            pytest.raises(StoreError, match="no free connection") as info,
            translate_errors("acquire", "redis://h"),
        ):
            raise raw
        assert not isinstance(info.value, StoreUnavailableError)
    with pytest.raises(StoreUnavailableError), translate_errors("acquire", "redis://h"):
        raise rex.ConnectionError("Error 111 connecting to h:6379. Connection refused.")
