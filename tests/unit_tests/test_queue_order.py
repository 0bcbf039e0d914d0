"""The queue's ordering rules, on the embedded store (the same scripts as on Redis):
priority first, tenants' turns within a priority, arrival within a tenant, expiry."""

from __future__ import annotations

import asyncio
import pickle
import time

import pytest

from rotating_llm import AllKeysExhaustedError, APIKey, KeyManager, Settings
from rotating_llm.errors import ConfigError
from rotating_llm.limiter import Refusal, Reservation
from rotating_llm.limiter._queue import new_ticket
from rotating_llm.secrets import EnvSecretStore


def _full_pool() -> KeyManager:
    keys = [APIKey(key_id="k0", model_name="m", provider="gemini", rpm=1, tpm=10**6)]
    km = KeyManager(
        keys,
        settings=Settings(window_seconds=30, max_wait=0),
        secret_store=EnvSecretStore({"API_KEY_K0": "x"}),
    )
    km.acquire("m", 1)
    return km


def _order(km: KeyManager) -> list[str]:
    base = f"{km.settings.key_prefix}v3:{{m}}:"
    return [m[12:] for m in km.store.primary.sync.zrange(base + "q", 0, -1)]


def _enqueue(km: KeyManager, specs: list[tuple[int, str | None]], life: float = 30.0) -> list[str]:
    tickets = []
    for priority, tenant in specs:
        t = new_ticket()
        out = km.limiter.reserve("m", 1, priority=priority, tenant=tenant, ticket=t,
                                 ticket_seconds=life)  # fmt: skip
        assert isinstance(out, Refusal) and out.position is not None
        tickets.append(t)
    return tickets


def test_priority_then_tenant_turns_then_arrival() -> None:
    km = _full_pool()
    specs = [(0, "a")] * 4 + [(0, "b")] * 2 + [(5, None), (-3, "a"), (5, None), (0, "c")]
    tickets = _enqueue(km, specs)
    name = dict(zip(tickets, [f"{p}{t}{i}" for i, (p, t) in enumerate(specs)], strict=True))
    assert [name[t] for t in _order(km)] == [
        "5None6", "5None8",  # priority first, arrival within it
        "0a0", "0b4", "0c9", "0a1", "0b5", "0a2", "0a3",  # tenants take turns
        "-3a7",
    ]  # fmt: skip


def test_a_new_tenant_starts_at_the_round_served() -> None:
    km = _full_pool()
    first = _enqueue(km, [(0, "a")] * 3)
    km.limiter.leave("m", first[0])  # (left, not served: the round served stays 0)
    late = _enqueue(km, [(0, "b")])
    assert _order(km) == [late[0], first[1], first[2]]


def test_positions_and_a_blocked_newcomer() -> None:
    km = _full_pool()
    _enqueue(km, [(0, None)] * 3)
    out = km.limiter.reserve("m", 1)  # no ticket: where it would stand
    assert isinstance(out, Refusal) and out.position == 3
    out = km.limiter.reserve("m", 1, priority=1)  # it would come first: it looks at keys
    assert isinstance(out, Refusal) and out.position is None and out.retry_after is not None


def test_an_expired_head_is_purged_and_never_blocks() -> None:
    km = _full_pool()
    dead = _enqueue(km, [(9, None)], life=0.001)
    live = _enqueue(km, [(0, None)])
    time.sleep(0.01)
    out = km.limiter.reserve("m", 1, ticket=live[0], ticket_seconds=30)
    assert isinstance(out, Refusal) and out.position == 0
    assert _order(km) == live and dead[0] not in _order(km)


def test_the_head_is_granted_and_leaves() -> None:
    keys = [APIKey(key_id="k0", model_name="m", provider="gemini", rpm=1, tpm=10**6)]
    km = KeyManager(keys, settings=Settings(window_seconds=0.05, max_wait=0),
                    secret_store=EnvSecretStore({"API_KEY_K0": "x"}))  # fmt: skip
    km.acquire("m", 1)
    head, other = _enqueue(km, [(0, None), (0, None)])
    time.sleep(0.06)  # capacity back
    assert isinstance(km.limiter.reserve("m", 1, ticket=other, ticket_seconds=30), Refusal)
    granted = km.limiter.reserve("m", 1, ticket=head, ticket_seconds=30)
    assert isinstance(granted, Reservation)
    assert _order(km) == [other]


def test_bad_tickets_are_refused() -> None:
    km = _full_pool()
    with pytest.raises(ConfigError, match="ticket"):
        km.limiter.reserve("m", 1, ticket="x' or 1", ticket_seconds=1)


def test_exhausted_error_pickles_with_its_queue_place() -> None:
    err = AllKeysExhaustedError("m", 1.5, {"k0": "rpm"}, queue_position=2, expected_wait=3.0)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is AllKeysExhaustedError and str(back) == str(err)
    assert (back.retry_after, back.reasons, back.queue_position, back.expected_wait) == (
        1.5, {"k0": "rpm"}, 2, 3.0,
    )  # fmt: skip


def test_ticket_setting() -> None:
    assert Settings().queue_ticket_seconds == 3.0
    s = Settings.from_env({"ROTATING_LLM_QUEUE_TICKET_SECONDS": "0.5"})
    assert s.queue_ticket_seconds == 0.5
    for bad in ("0", "601", "nan"):
        with pytest.raises(ConfigError):
            Settings.from_env({"ROTATING_LLM_QUEUE_TICKET_SECONDS": bad})


def test_a_tickets_life_has_one_bound() -> None:
    """The setting's bound is the one the script gets, and the queue's keys outlive it."""
    from rotating_llm._bounds import MAX_TICKET_SECONDS
    from rotating_llm.limiter import _schema
    from rotating_llm.limiter._limiter import _ticket_ms

    longest = Settings(queue_ticket_seconds=MAX_TICKET_SECONDS).queue_ticket_seconds
    assert _ticket_ms(new_ticket(), longest) == _schema.QUEUE_TICKET_MAX_MS
    assert _ticket_ms(new_ticket(), 10.0**9) == _schema.QUEUE_TICKET_MAX_MS
    assert _ticket_ms("", longest) == 0
    assert f"QU = {{TTL_MS = '{_schema.QUEUE_KEYS_TTL_MS}', PASSES" in _schema.lua_header()
    assert _schema.QUEUE_KEYS_TTL_MS > _schema.QUEUE_TICKET_MAX_MS


@pytest.mark.parametrize("priority", [10**15, 2**70, -1001, 1.5, True, "9"])
def test_the_limiter_checks_priority_itself(priority: object) -> None:
    """RedisLimiter.reserve is public: a priority that could break the queue's scores
    never reaches Lua (ConfigError), sync and async."""
    km = KeyManager(
        [APIKey(key_id="k0", model_name="m", provider="gemini", rpm=5, tpm=1000)],
        settings=Settings(max_wait=0),
        secret_store=EnvSecretStore({"API_KEY_K0": "sk-test-k0"}),
    )
    try:
        with pytest.raises(ConfigError, match="priority"):
            km.limiter.reserve("m", 1, priority=priority)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="priority"):
            asyncio.run(km.limiter.areserve("m", 1, priority=priority))  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="tenant"):
            km.limiter.reserve("m", 1, tenant="t" * 257)
    finally:
        km.close()
