"""Sticky keys: the key that last served an affinity is chosen while it has room."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import redis

from conftest import secrets_for
from rotating_llm import APIKey, ConfigError, KeyManager, Settings
from rotating_llm.limiter._affinity import affinity_digest
from rotating_llm.secrets import EnvSecretStore


def _keys(n: int, rpm: int, **kw: Any) -> list[APIKey]:
    return [
        APIKey(key_id=f"k{i}", model_name="m", provider="gemini", rpm=rpm, tpm=10**6, **kw)
        for i in range(n)
    ]


def _turn(km: KeyManager, conv: str | None, **kw: Any) -> tuple[str, bool | None]:
    lease = km.acquire("m", 1, max_wait=0, affinity=conv, **kw)
    lease.complete(1)
    return lease.key_id, lease.affinity_held


def test_an_affinity_holds_while_its_key_has_room_then_moves(
    make: Callable[..., KeyManager],
) -> None:
    km = make(_keys(4, rpm=6))
    first, held = _turn(km, "conv-a")
    assert held is False  # a new affinity: the strategy chose
    turns = [_turn(km, "conv-a") for _ in range(5)]
    assert turns == [(first, True)] * 5  # the key has room for all 6: every turn on it
    moved, held = _turn(km, "conv-a")  # its 6 are used: the strategy decides, it moves
    assert moved != first and held is False
    assert _turn(km, "conv-a") == (moved, True)
    assert _turn(km, None)[1] is None  # no affinity asked: nothing said


def test_affinities_spread_and_stay_apart(make: Callable[..., KeyManager]) -> None:
    km = make(_keys(4, rpm=50))
    homes = {c: _turn(km, c)[0] for c in ("a", "b", "c", "d")}
    assert len(set(homes.values())) == 4  # least recently used: each on its own key
    for _ in range(10):
        for conv, home in homes.items():
            assert _turn(km, conv) == (home, True)


def test_an_excluded_cooling_or_disabled_key_moves_the_affinity(
    make: Callable[..., KeyManager],
) -> None:
    km = make(_keys(3, rpm=50))
    home, _ = _turn(km, "x")
    other, held = _turn(km, "x", exclude=[home])  # e.g. a retry after a failure on it
    assert other != home and held is False
    assert _turn(km, "x") == (other, True)
    km.mark_key_unhealthy(other, 600, "rate limited (429)")
    third, held = _turn(km, "x")
    assert third != other and held is False
    km.disable_key(third, "revoked")
    assert _turn(km, "x")[0] != third


def test_an_affinity_to_a_removed_key_moves(make: Callable[..., KeyManager]) -> None:
    keys = _keys(3, rpm=50)
    km = make(keys)
    home, _ = _turn(km, "gone")
    km.remove_key(home)
    moved, held = _turn(km, "gone")
    assert moved != home and held is False
    km.add_key(next(k for k in keys if k.key_id == home))
    assert _turn(km, "gone") == (moved, True)  # the affinity is where it moved


def test_tier_beats_affinity(make: Callable[..., KeyManager]) -> None:
    km = make(
        [
            APIKey(key_id="free", model_name="m", provider="x", rpm=2, tpm=10**6),
            APIKey(key_id="paid", model_name="m", provider="x", rpm=50, tpm=10**6, tier=1),
        ]
    )
    assert _turn(km, "c")[0] == "free" and _turn(km, "c") == ("free", True)
    assert _turn(km, "c") == ("paid", False)  # free is full: overflow, the affinity moves
    assert _turn(km, "c") == ("paid", True)


def test_async_acquire_takes_an_affinity(make: Callable[..., KeyManager]) -> None:
    km = make(_keys(3, rpm=50))

    async def run() -> list[tuple[str, bool | None]]:
        out = []
        for _ in range(4):
            lease = await km.aacquire("m", 1, max_wait=0, affinity="async-conv")
            await lease.acomplete(1)
            out.append((lease.key_id, lease.affinity_held))
        await km.aclose()
        return out

    got = asyncio.run(run())
    assert [h for _, h in got] == [False, True, True, True] and len({k for k, _ in got}) == 1


def test_the_affinity_is_stored_as_a_digest_with_a_ttl(redis_url: str, prefix: str) -> None:
    keys = _keys(2, rpm=50)
    settings = Settings(redis_url=redis_url, key_prefix=prefix, affinity_ttl_seconds=120)
    km = KeyManager(keys, settings=settings, secret_store=EnvSecretStore(secrets_for(keys)))
    home, _ = _turn(km, "user-42/conversation-7")
    km.close()
    client = redis.Redis.from_url(redis_url)
    names = [k.decode() for k in client.scan_iter(f"{prefix}*:aff:*")]
    assert names == [f"{prefix}v3:{{m}}:aff:{affinity_digest('user-42/conversation-7')}"]
    assert client.get(names[0]) == home.encode()
    assert 0 < client.pttl(names[0]) <= 120_000
    client.close()


@pytest.mark.parametrize("bad", ["", 7, b"conv"])
def test_a_bad_affinity_is_a_config_error(make: Callable[..., KeyManager], bad: Any) -> None:
    km = make(_keys(1, rpm=5))
    with pytest.raises(ConfigError, match="affinity"):
        km.acquire("m", 1, max_wait=0, affinity=bad)


def test_an_affinity_of_any_length_is_hashed(make: Callable[..., KeyManager]) -> None:
    km = make(_keys(2, rpm=5))
    long_id = "thread-" + "x" * 100_000
    first = km.acquire("m", 1, max_wait=0, affinity=long_id)
    again = km.acquire("m", 1, max_wait=0, affinity=long_id)
    assert again.key_id == first.key_id and again.affinity_held is True
