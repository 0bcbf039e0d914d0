"""Sticky keys through the faces: RotatingChatModel (RunnableWithMessageHistory's
session_id, or ``affinity=``) and the RequestRouter's conv_id, on the simulator."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections import Counter
from typing import Any

import pytest
from _lc_fixtures import AIOHTTP_INHERITANCE, apool, pool
from _sticky_workers import conversations
from langchain_core.chat_history import InMemoryChatMessageHistory
from langchain_core.runnables.history import RunnableWithMessageHistory

from rotating_llm import ConfigError
from rotating_llm.langchain import RotatingChatModel
from rotating_llm.router import RequestRouter

pytestmark = [
    pytest.mark.redis,
    pytest.mark.filterwarnings(AIOHTTP_INHERITANCE),
    pytest.mark.filterwarnings("ignore::langchain_core._api.LangChainDeprecationWarning"),
]


def _chat(llm: RotatingChatModel) -> RunnableWithMessageHistory:
    stores: dict[str, InMemoryChatMessageHistory] = {}
    return RunnableWithMessageHistory(
        llm, lambda sid: stores.setdefault(sid, InMemoryChatMessageHistory())
    )


def _cfg(session: str) -> dict[str, Any]:
    return {"configurable": {"session_id": session}}


def test_a_session_stays_on_its_key_while_it_has_room_then_moves() -> None:
    with pool(4, key_rpm=5) as p:
        llm = RotatingChatModel(model=p.keys[0].model_name, key_manager=p.manager)
        chat = _chat(llm)
        metas = [chat.invoke(f"turn {i}", _cfg("s-1")).response_metadata for i in range(7)]
        keys = [m["key_id"] for m in metas]
        assert keys[:5] == [keys[0]] * 5  # the key had room for 5: every turn on it
        assert [m["affinity_held"] for m in metas[:5]] == [False, True, True, True, True]
        assert keys[5] != keys[0] and metas[5]["affinity_held"] is False  # full: moved
        assert keys[6] == keys[5] and metas[6]["affinity_held"] is True
        assert p.stats(keys[0]).requests == 5  # the provider saw the same: all 5 there
        with pytest.raises(ConfigError, match="affinity"):
            llm.invoke("bad", affinity="")


def test_a_session_id_of_any_length_is_a_conversation_not_an_error() -> None:
    with pool(3) as p:
        llm = RotatingChatModel(model=p.keys[0].model_name, key_manager=p.manager)
        chat = _chat(llm)
        long_session = "s-" + "y" * 5000  # found in the run's config: hashed, whatever its size
        metas = [chat.invoke(f"turn {i}", _cfg(long_session)).response_metadata for i in range(3)]
        assert [m["affinity_held"] for m in metas] == [False, True, True]
        assert len({m["key_id"] for m in metas}) == 1


def test_sessions_hold_their_keys_without_sticky_they_rotate() -> None:
    with pool(3) as p:
        llm = RotatingChatModel(model=p.keys[0].model_name, key_manager=p.manager)
        chat = _chat(llm)
        homes = {s: chat.invoke("hi", _cfg(s)).response_metadata["key_id"] for s in "abc"}
        for i in range(5):
            for s, home in homes.items():
                meta = chat.invoke(f"turn {i}", _cfg(s)).response_metadata
                assert (meta["key_id"], meta["affinity_held"]) == (home, True)
        off = _chat(llm.model_copy(update={"sticky_keys": False}))
        metas = [off.invoke(f"t{i}", _cfg("d")).response_metadata for i in range(6)]
        assert all("affinity_held" not in m for m in metas)
        assert len({m["key_id"] for m in metas}) == 3  # no affinity: the strategy spreads


def test_an_explicit_affinity_and_the_async_path() -> None:
    async def run() -> None:
        async with apool(3) as p:
            llm = RotatingChatModel(model=p.keys[0].model_name, key_manager=p.manager)
            first = await llm.ainvoke("hello", affinity="explicit-1")
            again = await llm.ainvoke("hello", affinity="explicit-1")
            assert first.response_metadata["affinity_held"] is False
            assert again.response_metadata["affinity_held"] is True
            assert again.response_metadata["key_id"] == first.response_metadata["key_id"]
            fixed = llm.model_copy(update={"affinity": "explicit-1"})
            third = await fixed.ainvoke("hello")
            assert third.response_metadata["affinity_held"] is True
            assert third.response_metadata["key_id"] == first.response_metadata["key_id"]
            chat = _chat(llm)
            metas = [
                (await chat.ainvoke(f"t{i}", _cfg("async-s"))).response_metadata for i in range(4)
            ]
            assert [m["affinity_held"] for m in metas] == [False, True, True, True]
            assert len({m["key_id"] for m in metas}) == 1
            stream = [c async for c in chat.astream("more", _cfg("async-s"))]
            assert stream[0].response_metadata["key_id"] == metas[0]["key_id"]
            assert stream[0].response_metadata["affinity_held"] is True
            await llm.aclose()

    asyncio.run(run())


def test_the_router_passes_conv_id_unless_turned_off() -> None:
    with pool(3, router_enabled=True) as p:
        router = RequestRouter(p.manager, max_wait=0)
        results = [router.send_chat("conv-r", f"q{i}") for i in range(5)]
        assert all(r["success"] for r in results)
        assert [r["affinity_held"] for r in results] == [False, True, True, True, True]
        assert len({r["key_id"] for r in results}) == 1
        one_shots = [router.send_one_shot(f"o{i}") for i in range(3)]
        assert all("affinity_held" not in r for r in one_shots)
    with pool(3, router_enabled=True, sticky_keys=False) as p:
        router = RequestRouter(p.manager, max_wait=0)
        results = [router.send_chat("conv-r", f"q{i}") for i in range(6)]
        assert all("affinity_held" not in r for r in results)
        assert len({r["key_id"] for r in results}) == 3


@pytest.mark.multiprocess
@pytest.mark.slow
def test_affinity_holds_for_95_percent_of_turns_across_processes() -> None:
    with pool(4, key_rpm=100) as p:
        keys = [k.model_dump() for k in p.keys]
        url = p.manager.settings.redis_url
        jobs = [
            (url, p.prefix, keys, p.secrets, [f"p{w}-c{c}" for c in range(3)], 10) for w in range(4)
        ]
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(4) as workers:
            results = workers.starmap(conversations, jobs)
        per_conv = {name: turns for r in results for name, turns in r.items()}
        assert len(per_conv) == 12
        for name, turns in per_conv.items():  # 120 of 400 rpm: every key always has room
            _, n = Counter(k for k, _ in turns).most_common(1)[0]
            assert n >= 0.95 * len(turns), (name, turns)
            assert sum(1 for _, held in turns[1:] if held) >= 0.95 * (len(turns) - 1)
            assert turns[0][1] is False
        served = sum(p.stats(k.key_id).requests for k in p.keys)
        assert served == 120
