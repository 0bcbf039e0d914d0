"""Per-tenant caps enforced in the acquire call: exact across processes, from the keys
file or the settings, released and corrected by settlement, bad values refused."""

from __future__ import annotations

import json
import multiprocessing
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from _tenant_workers import grab

from rotating_llm import APIKey, ConfigError, KeyFileError, KeyManager, Settings
from rotating_llm.errors import AllKeysExhaustedError
from rotating_llm.keys.models import TenantCap
from rotating_llm.limiter._schema import TENANT_REASON
from rotating_llm.secrets import EnvSecretStore

#: Secrets of the keys k0..k9 (never sent anywhere: no provider is called).
SECRETS = {f"API_KEY_K{i}": f"sk-test-{i}" for i in range(10)}

pytestmark = pytest.mark.redis


def _keys(n: int, rpm: int = 10, tpm: int = 100_000) -> list[APIKey]:
    return [APIKey(key_id=f"k{i}", model_name="m", provider="openai", rpm=rpm, tpm=tpm) for i in range(n)]


def _manager(
    redis_url: str, prefix: str, keys: list[APIKey] | None = None, **kw: Any
) -> KeyManager:
    caps = kw.pop("tenant_caps", None)
    path = kw.pop("key_store_path", None)
    settings = Settings(redis_url=redis_url, key_prefix=prefix, window_seconds=60, **kw)
    return KeyManager(
        keys,
        tenant_caps=caps,
        key_store_path=path,
        settings=settings,
        secret_store=EnvSecretStore(SECRETS),
        probe=False,
    )


def _take(m: KeyManager, tenant: str | None, n: int, tokens: int = 10) -> list[Any]:
    """Up to ``n`` leases for ``tenant`` (max_wait=0), stopping at the first refusal."""
    out = []
    for _ in range(n):
        try:
            out.append(m.acquire("m", tokens, max_wait=0, tenant=tenant))
        except AllKeysExhaustedError:
            break
    return out


@pytest.mark.multiprocess
def test_a_capped_tenant_gets_exactly_its_cap_across_processes_others_the_rest(
    redis_url: str, prefix: str
) -> None:
    keys = [k.model_dump() for k in _keys(3)]  # a pool of 30 requests per window
    caps = [{"tenant": "alice@example.com", "rpm": 5}]
    start = time.time() + 3.0
    jobs = [
        (redis_url, prefix, keys, caps, ["alice@example.com", "bob"] * 6, start)
        for _ in range(4)
    ]
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        results = pool.starmap(grab, jobs)
    flat = [r for rs in results for r in rs]
    granted = Counter(t for t, ok, _ in flat if ok)
    assert granted["alice@example.com"] == 5  # 24 asked: exactly the cap
    assert granted["bob"] == 24  # uncapped: the rest of the pool (30 - 5 = 25 >= 24)
    refused = [why for t, ok, why in flat if not ok]
    assert len(refused) == 19
    assert all(why == {TENANT_REASON: "tenant rpm"} for why in refused)


@pytest.mark.multiprocess
def test_a_share_of_the_pool_holds_across_processes_and_the_pool_is_all_used(
    redis_url: str, prefix: str
) -> None:
    keys = [k.model_dump() for k in _keys(2)]  # 20 per window; share 0.25 -> 5 each
    start = time.time() + 3.0
    jobs = [
        (redis_url, prefix, keys, [], [f"t{j}" for j in range(5)] * 2, start,
         {"tenant_share": 0.25})
        for _ in range(4)
    ]  # fmt: skip
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        results = pool.starmap(grab, jobs)
    flat = [r for rs in results for r in rs]
    granted = Counter(t for t, ok, _ in flat if ok)
    assert sum(granted.values()) == 20  # the pool is full: no capacity lost
    assert all(n <= 5 for n in granted.values()), granted
    m = _manager(redis_url, prefix, _keys(2), tenant_share=0.25)
    try:
        statuses = {t: m.get_tenant_status(t)[0] for t in granted}
        assert {t: s["rpm_count"] for t, s in statuses.items()} == dict(granted)
        assert all(s["rpm_cap"] == 5 and s["tpm_cap"] == 50_000 for s in statuses.values())
    finally:
        m.close()


def test_release_frees_the_tenants_slot_and_complete_corrects_its_tokens(
    redis_url: str, prefix: str
) -> None:
    m = _manager(redis_url, prefix, _keys(2), tenant_caps=[TenantCap(tenant="a", rpm=2, tpm=100)])
    try:
        first, second = _take(m, "a", 2, tokens=40)
        with pytest.raises(AllKeysExhaustedError) as info:
            m.acquire("m", 10, max_wait=0, tenant="a")
        assert info.value.reasons == {TENANT_REASON: "tenant rpm"}
        assert info.value.retry_after is not None and 50 < info.value.retry_after <= 60
        assert _take(m, "b", 3)  # another tenant is not held back
        second.release()
        third = m.acquire("m", 60, max_wait=0, tenant="a")  # the released slot and tokens
        [status] = m.get_tenant_status("a")
        assert (status["rpm_count"], status["tpm_used"]) == (2, 100)
        first.complete(5)  # 35 tokens fewer
        third.complete(60)
        [status] = m.get_tenant_status("a")
        assert (status["rpm_count"], status["tpm_used"]) == (2, 65)
        second_too = _take(m, "a", 1)
        assert not second_too  # the requests cap still holds
        with pytest.raises(AllKeysExhaustedError) as info:
            m.acquire("m", 10, max_wait=0, tenant="a")
        assert info.value.reasons == {TENANT_REASON: "tenant rpm"}
        assert m.get_tenant_status("nobody") == [  # only "a" is named: no cap, not counted
            {"model": "m", "rpm_cap": None, "tpm_cap": None, "rpm_count": 0, "tpm_used": 0}
        ]
    finally:
        m.close()


def test_a_tokens_cap_refuses_by_tokens(redis_url: str, prefix: str) -> None:
    m = _manager(redis_url, prefix, _keys(2), tenant_caps=[TenantCap(tenant="a", tpm=50)])
    try:
        assert len(_take(m, "a", 5, tokens=20)) == 2
        with pytest.raises(AllKeysExhaustedError) as info:
            m.acquire("m", 20, max_wait=0, tenant="a")
        assert info.value.reasons == {TENANT_REASON: "tenant tpm"}
        assert len(_take(m, None, 5)) == 5  # no tenant: no cap
    finally:
        m.close()


def test_caps_from_the_keys_file(redis_url: str, prefix: str, tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    doc = {
        "keys": [k.model_dump(exclude_none=True) for k in _keys(2)],
        "tenants": [{"tenant": "alice", "rpm": 3}, {"tenant": "*", "share": 0.1}],
    }
    path.write_text(json.dumps(doc))
    m = _manager(redis_url, prefix, key_store_path=path, tenant_rpm=7)
    try:
        assert len(_take(m, "alice", 10)) == 3  # its own entry
        assert len(_take(m, "carol", 10)) == 2  # "*": 0.1 of 20 (the file wins over settings)
        assert m.get_tenant_status("carol") == [
            {"model": "m", "rpm_cap": 2, "tpm_cap": 20_000, "rpm_count": 2, "tpm_used": 20}
        ]
        m.add_key(APIKey(key_id="k9", model_name="m", provider="openai", rpm=10, tpm=100_000), persist=True)
        assert json.loads(path.read_text())["tenants"] == doc["tenants"]  # kept on save
        doc["tenants"] = [{"tenant": "alice", "rpm": 4}]
        path.write_text(json.dumps(doc))
        m.reload_keys()
        assert len(_take(m, "alice", 10)) == 1  # 4 now, 3 held
        assert len(_take(m, "dave", 10)) == 7  # no "*" entry now: the settings' 7
    finally:
        m.close()


def test_caps_from_the_settings(redis_url: str, prefix: str) -> None:
    env = {"ROTATING_LLM_TENANT_RPM": "4", "ROTATING_LLM_TENANT_TPM": "1000"}
    s = Settings.from_env(env, redis_url=redis_url, key_prefix=prefix, window_seconds=60)
    assert (s.tenant_rpm, s.tenant_tpm, s.tenant_share) == (4, 1000, None)
    m = KeyManager(_keys(2), settings=s, secret_store=EnvSecretStore(SECRETS), probe=False)
    try:
        assert len(_take(m, "x", 10)) == 4
        assert len(_take(m, "y", 10)) == 4
        assert len(_take(m, None, 20)) == 12  # the rest of the pool's 20
    finally:
        m.close()


@pytest.mark.parametrize(
    ("entry", "field", "words"),
    [
        ({"tenant": "a", "rpm": 0}, "rpm", "greater than 0"),
        ({"tenant": "a", "rpm": "5"}, "rpm", "integer"),
        ({"tenant": "a", "share": 1.5}, "share", "less than or equal to 1"),
        ({"tenant": "a", "share": "half"}, "share", "number"),
        ({"tenant": "a", "share": True}, "share", "number"),
        ({"tenant": "a"}, None, "at least one of rpm, tpm, share"),
        ({"tenant": "", "rpm": 1}, "tenant", "at least 1 character"),
        ({"tenant": "a", "rpn": 1}, "rpn", "did you mean 'rpm'"),
        ({"rpm": 1}, "tenant", "required field is missing"),
    ],
)
def test_bad_caps_in_the_file_are_refused_naming_file_entry_and_field(
    tmp_path: Path, entry: dict[str, Any], field: str | None, words: str
) -> None:
    from rotating_llm.keys.loader import load_keys_document

    path = tmp_path / "keys.json"
    keys = [k.model_dump(exclude_none=True) for k in _keys(1)]
    path.write_text(json.dumps({"keys": keys, "tenants": [{"tenant": "ok", "rpm": 1}, entry]}))
    with pytest.raises(KeyFileError) as info:
        load_keys_document(path)
    text = str(info.value)
    assert str(path) in text and "tenants[1]" in text and words in text, text
    if field:
        assert field in text


def test_a_duplicate_tenant_and_a_bad_list_are_refused(tmp_path: Path) -> None:
    from rotating_llm.keys.loader import load_keys_document

    path = tmp_path / "keys.json"
    keys = [k.model_dump(exclude_none=True) for k in _keys(1)]
    path.write_text(json.dumps({"keys": keys, "tenants": [{"tenant": "a", "rpm": 1}] * 2}))
    with pytest.raises(KeyFileError, match=r"duplicate tenant \(first at tenants\[0\]\)"):
        load_keys_document(path)
    path.write_text(json.dumps({"keys": keys, "tenants": {"a": 1}}))
    with pytest.raises(KeyFileError, match="'tenants' must be a list"):
        load_keys_document(path)


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("ROTATING_LLM_TENANT_RPM", "0"),
        ("ROTATING_LLM_TENANT_RPM", "lots"),
        ("ROTATING_LLM_TENANT_TPM", str(10**13)),
        ("ROTATING_LLM_TENANT_SHARE", "1.5"),
        ("ROTATING_LLM_TENANT_SHARE", "nan"),
    ],
)
def test_bad_settings_are_refused_naming_the_variable(var: str, value: str) -> None:
    with pytest.raises(ConfigError, match=var):
        Settings.from_env({var: value})


def test_a_tenant_waiting_for_its_cap_holds_no_place_in_the_queue(
    redis_url: str, prefix: str
) -> None:
    import threading

    import redis

    keys = _keys(1)
    settings = Settings(redis_url=redis_url, key_prefix=prefix, window_seconds=2)
    m = KeyManager(
        keys,
        tenant_caps=[TenantCap(tenant="a", rpm=1)],
        settings=settings,
        secret_store=EnvSecretStore(SECRETS),
        probe=False,
    )
    r = redis.Redis.from_url(redis_url)
    try:
        assert _take(m, "a", 1)
        got: list[Any] = []
        waiter = threading.Thread(target=lambda: got.append(m.acquire("m", 10, 10.0, tenant="a")))
        waiter.start()
        time.sleep(0.3)  # (the waiter is refused by its cap meanwhile, and sleeps)
        assert waiter.is_alive()
        assert r.exists(f"{prefix}v3:{{m}}:q") == 0  # no ticket: nobody queues behind it
        others = _take(m, "b", 3) + _take(m, None, 3)
        waiter.join()
        assert len(others) == 6  # served at once, while the capped tenant waited
        assert len(got) == 1  # and it was served once its own window had room
    finally:
        r.close()
        m.close()
