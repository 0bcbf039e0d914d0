"""A key's ``tier`` in a keys file: an int from 0 to MAX_TIER, default 0, else KeyFileError."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rotating_llm import KeyFileError, load_keys_file
from rotating_llm._bounds import MAX_TIER
from rotating_llm.limiter._group_ops import GroupOps
from rotating_llm.limiter._key_check import pool_tiers


def _write(tmp_path: Path, **extra: Any) -> Path:
    entry = {"key_id": "k0", "model_name": "m", "provider": "gemini", "rpm": 5, "tpm": 100}
    p = tmp_path / "keys.json"
    p.write_text(json.dumps({"keys": [{**entry, **extra}]}), encoding="utf-8")
    return p


def test_tier_defaults_to_zero_and_loads(tmp_path: Path) -> None:
    assert load_keys_file(_write(tmp_path))[0].tier == 0
    assert load_keys_file(_write(tmp_path, tier=3))[0].tier == 3
    assert load_keys_file(_write(tmp_path, tier=MAX_TIER))[0].tier == MAX_TIER


@pytest.mark.parametrize("bad", [-1, MAX_TIER + 1, 1.5, 1.0, "1", True, None, [0]])
def test_bad_tier_is_a_key_file_error_naming_the_field(tmp_path: Path, bad: Any) -> None:
    with pytest.raises(KeyFileError) as info:
        load_keys_file(_write(tmp_path, tier=bad))
    assert info.value.field == "tier" and info.value.entry == 0
    assert "keys[0]" in str(info.value) and "tier" in str(info.value)


def test_tier_reaches_the_script_only_when_not_zero(tmp_path: Path) -> None:
    k0 = load_keys_file(_write(tmp_path))[0]
    k2 = k0.model_copy(update={"tier": 2})
    ops = GroupOps()
    ops._groups = {}
    assert ops._limits_arg(k0) == "5 100 0 0 1.0 -"  # today's string: no tier field
    assert ops._limits_arg(k2) == "5 100 0 0 1.0 - 2"
    assert pool_tiers("m", [k0]) == [0] and pool_tiers("m", []) == []
    assert pool_tiers("m", [k2, k0, k2]) == [0, 2] and pool_tiers("m", [k2]) == [2]
