"""Request ids: checked at the edge, unique per attempt, and honoured by the embedded
store (fakeredis, Lua 5.4) as by Redis: the same id twice is one reservation."""

from __future__ import annotations

import os
from typing import Any

import pytest

from rotating_llm import APIKey, KeyManager, Settings
from rotating_llm.errors import ConfigError
from rotating_llm.limiter import Reservation
from rotating_llm.limiter._request_id import MAX_REQUEST_ID, check_request_id, new_request_id
from rotating_llm.secrets import EnvSecretStore


def _manager() -> KeyManager:
    ks = [APIKey(key_id=f"e{i}", model_name="m", provider="gemini", rpm=5, tpm=1000)
          for i in range(2)]  # fmt: skip
    env = {f"API_KEY_{k.key_id.upper()}": f"sk-embedded-{k.key_id}" for k in ks}
    return KeyManager(ks, settings=Settings(max_wait=0), secret_store=EnvSecretStore(env))


def _held(km: KeyManager) -> int:
    return sum(u.rpm_count for u in km.limiter.usage("m").values())


def test_new_ids_are_distinct_and_acceptable() -> None:
    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    for rid in ids:
        assert check_request_id(rid) == rid


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_draws_its_own_ids() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 200).decode()
    os.close(read)
    os.close(write)
    mine = new_request_id()
    assert child.split(".")[0] != mine.split(".")[0]


@pytest.mark.parametrize(
    "bad", ["", "a" * (MAX_REQUEST_ID + 1), "a b", "{pool}", "a:b", "é", "x\n", 5, None, b"ab"]
)
def test_unsafe_ids_are_refused(bad: Any) -> None:
    with pytest.raises(ConfigError, match="request_id"):
        check_request_id(bad)
    km = _manager()
    if bad is not None:  # None asks for a new id
        with pytest.raises(ConfigError, match="request_id"):
            km.limiter.reserve("m", 1, request_id=bad)
    assert _held(km) == 0


def test_embedded_store_returns_the_first_grant() -> None:
    km = _manager()
    assert km.store.primary.is_embedded
    first = km.limiter.reserve("m", 10, request_id="same")
    again = km.limiter.reserve("m", 10, request_id="same")
    assert isinstance(first, Reservation) and again == first
    other = km.limiter.reserve("m", 10, request_id="other")
    assert isinstance(other, Reservation) and other != first
    assert _held(km) == 2


async def test_embedded_store_async_returns_the_first_grant() -> None:
    km = _manager()
    first = await km.limiter.areserve("m", 10, request_id="same")
    again = await km.limiter.areserve("m", 10, request_id="same")
    assert isinstance(first, Reservation) and again == first
    assert _held(km) == 1
    await km.aclose()
