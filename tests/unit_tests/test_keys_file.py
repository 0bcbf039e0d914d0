"""Keys files: the seed's format loads; every bad file gets one clear error; nothing half-loaded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rotating_llm import APIKey, KeyFileError, KeyManager, Settings, load_keys_file
from rotating_llm.keys import save_keys_file
from rotating_llm.secrets import EnvSecretStore

SEED_KEYS = {
    "keys": [
        {
            "key_id": "gemini-flash-01",
            "model_name": "gemini-2.5-flash",
            "provider": "gemini",
            "rpm": 10,
            "tpm": 250000,
            "rpd": 1500,
            "active": True,
            "tags": {"tier": "free", "pool": "flash"},
        },
        {
            "key_id": "gemini-flash-02",
            "model_name": "gemini-2.5-flash",
            "provider": "gemini",
            "rpm": 10,
            "tpm": 250000,
            "active": True,
            "tags": {"tier": "free", "pool": "flash"},
        },
        {
            "key_id": "gemini-pro-01",
            "model_name": "gemini-2.5-pro",
            "provider": "gemini",
            "rpm": 5,
            "tpm": 100000,
            "rpd": 50,
            "active": True,
            "tags": {"tier": "free", "pool": "pro"},
        },
    ]
}


def write(tmp_path: Path, doc: Any) -> Path:
    p = tmp_path / "keys.json"
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return p


def entry(**overrides: Any) -> dict[str, Any]:
    base = {"key_id": "a", "model_name": "m", "provider": "gemini", "rpm": 1, "tpm": 10}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def test_seed_file_loads(tmp_path: Path) -> None:
    keys = load_keys_file(write(tmp_path, SEED_KEYS))
    assert [k.key_id for k in keys] == ["gemini-flash-01", "gemini-flash-02", "gemini-pro-01"]
    assert keys[0].rpd == 1500 and keys[1].rpd is None
    assert keys[2].tags == {"tier": "free", "pool": "pro"}
    assert keys[0].weight == 1.0 and keys[0].base_url is None


@pytest.mark.parametrize(
    ("doc", "expect"),
    [
        ("{not json", "malformed JSON at line 1, column 2"),
        ("[]", "top level must be an object"),
        ({"keys": {}}, "'keys' must be a list"),
        ({}, "missing the 'keys' list"),
        ({"keys": [], "extra": 1}, "unknown top-level field(s) ['extra']"),
        ({"keys": ["x"]}, "keys[0]: entry must be an object"),
        ({"keys": [entry(rpm=...)]}, "keys[0] ('a'), field 'rpm': required field is missing"),
        ({"keys": [entry(model_name=...)]}, "field 'model_name': required field is missing"),
        ({"keys": [entry(rpm=0)]}, "field 'rpm': Input should be greater than 0"),
        ({"keys": [entry(tpm=-5)]}, "field 'tpm': Input should be greater than 0"),
        ({"keys": [entry(rpd=0)]}, "field 'rpd': Input should be greater than 0"),
        ({"keys": [entry(tpd=0)]}, "field 'tpd': Input should be greater than 0"),
        ({"keys": [entry(tpd=10**30)]}, "field 'tpd': Input should be less than or equal to"),
        ({"keys": [entry(tpd=True)]}, "field 'tpd'"),
        ({"keys": [entry(rpm="10")]}, "field 'rpm': Input should be a valid integer"),
        ({"keys": [entry(rpm=1.5)]}, "field 'rpm'"),
        ({"keys": [entry(weight=0)]}, "field 'weight'"),
        ({"keys": [entry(color="red")]}, "keys[0] ('a'), field 'color': unknown field 'color'"),
        ({"keys": []}, "field 'keys': the 'keys' list is empty"),
        (
            {"keys": [entry(rpm=..., rmp=10)]},
            "keys[0] ('a'), field 'rmp': unknown field 'rmp'; did you mean 'rpm'?",
        ),
        ({"keys": [entry(key_id="has space")]}, "field 'key_id'"),
        ({"keys": [entry(model_name="m{x}")]}, "field 'model_name'"),
        ({"keys": [entry(base_url="ftp://x")]}, "field 'base_url': Value error, must be an http"),
        (
            {"keys": [entry(), entry(key_id="b"), entry()]},
            "keys[2] ('a'), field 'key_id': duplicate key_id (first at keys[0])",
        ),
    ],
)
def test_bad_files_name_file_entry_and_field(tmp_path: Path, doc: Any, expect: str) -> None:
    path = write(tmp_path, doc)
    with pytest.raises(KeyFileError) as info:
        load_keys_file(path)
    assert str(path) in str(info.value)
    assert expect in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="file not found"):
        load_keys_file(tmp_path / "nope.json")


def test_reload_with_bad_file_keeps_current_keys(tmp_path: Path) -> None:
    path = write(tmp_path, SEED_KEYS)
    km = KeyManager(key_store_path=path, settings=Settings(), secret_store=EnvSecretStore({}))
    before = [k.key_id for k in km.keys]
    bad = json.loads(json.dumps(SEED_KEYS))
    bad["keys"].append({"key_id": "new", "model_name": "m", "provider": "x", "rpm": 0, "tpm": 1})
    write(tmp_path, bad)
    with pytest.raises(KeyFileError, match=r"keys\[3\]"):
        km.reload_keys()
    assert [k.key_id for k in km.keys] == before


def test_save_round_trips_and_is_atomic(tmp_path: Path) -> None:
    path = write(tmp_path, SEED_KEYS)
    keys = load_keys_file(path)
    keys.append(APIKey(key_id="x", model_name="m", provider="openai", rpm=1, tpm=2, weight=2.5))
    save_keys_file(path, keys)
    assert load_keys_file(path) == keys
    assert [p.name for p in tmp_path.iterdir()] == ["keys.json"]


def test_api_key_is_frozen_and_strict() -> None:
    key = APIKey(key_id="k", model_name="m", provider="Gemini", rpm=1, tpm=1)
    assert key.provider == "gemini"
    with pytest.raises(ValueError, match="frozen"):
        key.rpm = 5  # type: ignore[misc]


def group(**overrides: Any) -> dict[str, Any]:
    base = {"group_id": "proj-a", "rpm": 4}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


@pytest.mark.parametrize(
    ("doc", "expect"),
    [
        (
            {"keys": [entry(quota_group="proj-b")], "quota_groups": [group()]},
            "keys[0] ('a'), field 'quota_group': unknown quota group 'proj-b'; "
            "quota_groups: ['proj-a']",
        ),
        (
            {"keys": [entry(quota_group="proj-a")]},
            "keys[0] ('a'), field 'quota_group': unknown quota group 'proj-a'",
        ),
        (
            {"keys": [entry()], "quota_groups": [group(rpm=...)]},
            "quota_groups[0] ('proj-a'): Value error, a quota group needs at least one of "
            "rpm, tpm, rpd, tpd",
        ),
        (
            {"keys": [entry()], "quota_groups": [group(), group(tpm=5)]},
            "quota_groups[1] ('proj-a'), field 'group_id': duplicate group_id "
            "(first at quota_groups[0])",
        ),
        (
            {
                "keys": [entry(quota_group="proj-a"), entry(key_id="b", model_name="other",
                                                            quota_group="proj-a")],
                "quota_groups": [group()],
            },
            "keys[1] ('b'), field 'quota_group': quota group 'proj-a' already has keys of "
            "model 'm' (keys[0])",
        ),
        ({"keys": [entry()], "quota_groups": [group(rpm=0)]}, "quota_groups[0] ('proj-a'), "
         "field 'rpm': Input should be greater than 0"),
        ({"keys": [entry()], "quota_groups": [group(tpd=10**13)]}, "field 'tpd'"),
        ({"keys": [entry()], "quota_groups": [group(rpn=3)]},
         "quota_groups[0] ('proj-a'), field 'rpn': unknown field 'rpn'; did you mean 'rpm'?"),
        ({"keys": [entry()], "quota_groups": [group(group_id="a:b")]}, "field 'group_id'"),
        ({"keys": [entry()], "quota_groups": {}}, "field 'quota_groups': 'quota_groups' must"),
        ({"keys": [entry(quota_group="x y")]}, "keys[0] ('a'), field 'quota_group'"),
    ],
)  # fmt: skip
def test_bad_quota_groups_name_file_entry_and_field(tmp_path: Path, doc: Any, expect: str) -> None:
    path = write(tmp_path, doc)
    with pytest.raises(KeyFileError) as info:
        load_keys_file(path)
    assert str(path) in str(info.value)
    assert expect in str(info.value)


def test_quota_groups_load_round_trip_and_reach_the_manager(tmp_path: Path) -> None:
    from rotating_llm import QuotaGroup
    from rotating_llm.keys.loader import load_keys_document

    doc = {
        "quota_groups": [{"group_id": "proj-a", "rpm": 10, "tpm": 250000, "rpd": 250,
                          "tpd": 1000000}],
        "keys": [entry(quota_group="proj-a", tpd=500), entry(key_id="b", quota_group="proj-a")],
    }  # fmt: skip
    path = write(tmp_path, doc)
    loaded = load_keys_document(path)
    assert loaded.quota_groups == [
        QuotaGroup(group_id="proj-a", rpm=10, tpm=250000, rpd=250, tpd=1000000)
    ]
    assert [k.quota_group for k in loaded.keys] == ["proj-a", "proj-a"]
    save_keys_file(path, loaded.keys, loaded.quota_groups)
    assert load_keys_document(path) == loaded
    km = KeyManager(key_store_path=path, settings=Settings(), secret_store=EnvSecretStore({}))
    assert km.quota_groups == loaded.quota_groups
    km.remove_key("b", persist=True)  # persisting keeps the groups
    assert load_keys_document(path).quota_groups == loaded.quota_groups
    km.close()
