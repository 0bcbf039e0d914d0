"""The Lua scripts and the Python side agree on the schema module's names and positions."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from rotating_llm.limiter import _schema as schema
from rotating_llm.limiter._days import DayBoundaries
from rotating_llm.limiter._limiter import (
    _G_AFF,
    _G_DAY,
    _G_KEY,
    _G_NOW,
    _G_RES,
    _G_TEN,
    _R_RETRY,
)
from rotating_llm.storage._store import FUNCTION_SCRIPTS, load_library, load_script

_NAME = re.compile(r"\b(?:HEAD|ACQUIRE|SETTLE|HEALTH|REGISTER|STATUS|GRANT|REFUSAL)_[A-Z0-9_]+\b")


def _lua(name: str) -> str:
    return (resources.files("rotating_llm.limiter") / "lua" / f"{name}.lua").read_text()


def _declared() -> set[str]:
    names: set[str] = set()
    for line in schema.lua_header().splitlines():
        if line.startswith("local "):
            names.update(n.strip() for n in line[6:].split("=")[0].split(","))
    return names


def test_every_schema_name_used_in_lua_is_declared() -> None:
    declared = _declared()
    for name in (*FUNCTION_SCRIPTS, "_prelude"):
        used = set(_NAME.findall(_lua(name)))
        assert used <= declared, f"{name}.lua uses undeclared {sorted(used - declared)}"


def test_every_script_argument_is_read_by_its_script() -> None:
    prelude = _lua("_prelude")
    for script, names in schema.ARGS.items():
        body = _lua(script)
        for arg in names[len(schema.HEAD) :]:
            assert f"{script.upper()}_{arg.upper()}" in body, (script, arg)
    for arg in ("window_us", "day_0", "day_3"):
        assert f"HEAD_{arg.upper()}" in prelude


def test_header_positions_match_the_declaration() -> None:
    header = schema.lua_header()
    assert "ACQUIRE_EST" in header
    env: dict[str, int | str] = {}
    for line in header.splitlines():
        if line.startswith("local LEARN_KINDS = "):
            table = line.split("=", 1)[1].strip().strip("{}")
            assert tuple(v.strip().strip("'") for v in table.split(",")) == schema.LEARN_KINDS
        elif line.startswith("local TENANT = "):
            table = f"{{MARK = '{schema.TENANT_MARK}', REASON = '{schema.TENANT_REASON}'}}"
            assert line.split("=", 1)[1].strip() == table
        elif line.startswith("local QU = "):  # the queue's keys outlive any ticket
            assert line.split("=", 1)[1].strip() == (
                f"{{TTL_MS = '{schema.QUEUE_KEYS_TTL_MS}', PASSES = {schema.QUEUE_PASSES}}}"
            )
            assert schema.QUEUE_KEYS_TTL_MS > schema.QUEUE_TICKET_MAX_MS
        elif line.startswith("local "):
            left, right = line[6:].split("=")
            for n, v in zip(left.split(","), right.split(","), strict=True):
                v = v.strip()
                env[n.strip()] = v.strip("'") if v.startswith("'") else int(v)
    for script, names in schema.ARGS.items():
        assert names[: len(schema.HEAD)] == schema.HEAD  # named once, as HEAD_*
        for i, arg in enumerate(names, 1):
            name = "HEAD" if i <= len(schema.HEAD) else script.upper()
            assert env[f"{name}_{arg.upper()}"] == i
    for i, field in enumerate(schema.STATUS):
        assert env[f"STATUS_{field.upper()}"] == i
    assert env["STATUS_WIDTH"] == len(schema.STATUS)
    assert env["HEAD_LEN"] == len(schema.HEAD)
    assert env["GROUP_MARK"] == schema.GROUP_MARK
    assert env["LEARNED_GROUP"] == schema.LEARNED_GROUP
    assert env["LEARNED_GROUP_KIND"] == schema.LEARNED_GROUP_KIND
    assert schema.LEARNED_GROUP.startswith(schema.GROUP_MARK)
    for name, code in schema.RATES.items():
        assert env[f"RATE_{name.upper()}"] == code
    assert env["RATE_BUCKET_US"] == schema.RATE_BUCKET_S * 1_000_000
    assert env["RATE_TTL_S"] == schema.RATE_TTL_S


def test_python_reads_replies_at_the_schema_positions() -> None:
    fields = ("reservation_id", "day", "now_us", "affinity", "tenant", "key_id")
    positions = (_G_RES, _G_DAY, _G_NOW, _G_AFF, _G_TEN, _G_KEY)
    assert tuple(schema.GRANT.index(f) for f in fields) == positions
    assert schema.REFUSAL.index("retry_after_us") == _R_RETRY
    # the grant is built in the GRANT order
    built = (
        "local grant = rs .. ' ' .. DAY_S .. ' ' .. NOW_S .. ' ' .. aff .. ' ' .. "
        "(tn and ARGV[ACQUIRE_TENANT] or '-') .. ' ' .. kid"
    )
    assert built in _lua("acquire")
    assert _lua("acquire").rstrip().splitlines()[-1] == "return grant"
    assert fields == schema.GRANT


@pytest.mark.parametrize("name", FUNCTION_SCRIPTS)
def test_loaded_sources_start_with_the_header(name: str) -> None:
    assert schema.lua_header() in load_script(name)
    assert schema.lua_header() in load_library()[1]


def test_keys_carry_the_layout_version() -> None:
    assert (
        schema.pool_base("rllm:", "gemini-2.5") == f"rllm:v{schema.LAYOUT_VERSION}:{{gemini-2.5}}:"
    )


def test_acquire_args_follow_the_declared_order() -> None:
    from rotating_llm import Settings
    from rotating_llm.limiter import RedisLimiter

    lim = RedisLimiter.__new__(RedisLimiter)
    lim.window_us, lim.days = 60_000_000, DayBoundaries("UTC")
    lim.settings = Settings()
    lim._tiers, lim._affinity_ttl_ms = {"m": "0,2"}, 5000
    args = lim._acquire_args(None, "m", 17, "round_robin", ["a", "b"], "r-1", "d")  # type: ignore[arg-type]
    named = dict(zip(schema.ARGS["acquire"], args, strict=True))
    assert named["est"] == 17 and named["strategy"] == "round_robin"
    assert named["request_id"] == "r-1"
    assert named["affinity"] == "d"
    assert named["affinity_ttl_ms"] == 5000
    assert named["exclude"] == "a,b" and named["window_us"] == 60_000_000
