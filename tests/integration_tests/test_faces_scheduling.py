"""Every face delivers ``priority`` and ``tenant`` (and the LiteLLM face an affinity) to
the pool's acquire: RotatingChatModel (fields, call keywords, bind, batch, streams,
RunnableWithMessageHistory), the RequestRouter (``user_id`` -> tenant) and the LiteLLM
Router's strategy, each on the simulator as a real HTTP server and a real Redis."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from _lc_fixtures import AIOHTTP_INHERITANCE, GPT, pool
from langchain_core.chat_history import InMemoryChatMessageHistory
from langchain_core.runnables.history import RunnableWithMessageHistory

from rotating_llm import ConfigError, KeyManager
from rotating_llm.langchain import RotatingChatModel
from rotating_llm.router import RequestRouter

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

pytestmark = [
    pytest.mark.redis,
    pytest.mark.filterwarnings(AIOHTTP_INHERITANCE),
    pytest.mark.filterwarnings("ignore::langchain_core._api.LangChainDeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Item.*on TypedDict class.*ReadOnly:UserWarning"),
]


@contextmanager
def spied(manager: KeyManager) -> Iterator[list[dict[str, Any]]]:
    """Record the scheduling keywords of every acquire (sync and async) of ``manager``."""
    seen: list[dict[str, Any]] = []
    sync, asy = manager.acquire, manager.aacquire
    names = ("priority", "tenant", "affinity")

    def acquire(*args: Any, **kw: Any) -> Any:
        seen.append({n: kw.get(n) for n in names})
        return sync(*args, **kw)

    async def aacquire(*args: Any, **kw: Any) -> Any:
        seen.append({n: kw.get(n) for n in names})
        return await asy(*args, **kw)

    manager.acquire = acquire  # type: ignore[method-assign]
    manager.aacquire = aacquire  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        del manager.acquire, manager.aacquire


def _pt(seen: list[dict[str, Any]]) -> list[tuple[Any, Any]]:
    return [(s["priority"], s["tenant"]) for s in seen]


def test_the_chat_model_passes_fields_and_call_keywords_on_every_path() -> None:
    with pool(2, sticky_keys=False) as p:
        llm = RotatingChatModel(model=p.keys[0].model_name, key_manager=p.manager)
        with spied(p.manager) as seen:
            llm.invoke("a")
            llm.invoke("b", priority=9, tenant="alice@example.com")
            list(llm.stream("c", priority=-3, tenant="bob"))
            llm.batch(["d", "e"], priority=5, tenant="carol")
            llm.bind(priority=7, tenant="dave").invoke("f")
            fixed = RotatingChatModel(
                model=p.keys[0].model_name, key_manager=p.manager, priority=2, tenant="erin"
            )
            fixed.invoke("g")
            fixed.invoke("h", priority=1)  # a call's keyword wins over the field
        assert _pt(seen) == [
            (0, None),
            (9, "alice@example.com"),
            (-3, "bob"),
            (5, "carol"),
            (5, "carol"),
            (7, "dave"),
            (2, "erin"),
            (1, "erin"),
        ]
        served = sum(p.stats(k.key_id).requests for k in p.keys)
        assert served == 8  # every call reached the simulator
        with pytest.raises(ConfigError, match="priority"):
            llm.invoke("x", priority=5000)
        with pytest.raises(ConfigError, match="priority"):
            llm.invoke("x", priority="high")
        with pytest.raises(ConfigError, match="tenant"):
            llm.invoke("x", tenant="")
        with pytest.raises(ConfigError, match="priority"):
            RotatingChatModel(model=p.keys[0].model_name, key_manager=p.manager, priority=1001)
        with pytest.raises(ConfigError, match="tenant"):
            RotatingChatModel(model=p.keys[0].model_name, key_manager=p.manager, tenant="x" * 300)


def test_the_async_paths_and_message_history_carry_them() -> None:
    async def run() -> None:
        with pool(2) as p:
            llm = RotatingChatModel(model=p.keys[0].model_name, key_manager=p.manager)
            stores: dict[str, InMemoryChatMessageHistory] = {}
            chat = RunnableWithMessageHistory(
                llm.bind(priority=4, tenant="tina"),
                lambda sid: stores.setdefault(sid, InMemoryChatMessageHistory()),
            )
            cfg: Any = {"configurable": {"session_id": "s-1"}}
            with spied(p.manager) as seen:
                await llm.ainvoke("a", priority=8, tenant="ann")
                _ = [c async for c in llm.astream("b", priority=6, tenant="ben")]
                await llm.abatch(["c"], priority=3, tenant="cy")
                chat.invoke("d", cfg)
                await chat.ainvoke("e", cfg)
            assert _pt(seen) == [(8, "ann"), (6, "ben"), (3, "cy"), (4, "tina"), (4, "tina")]
            assert [s["affinity"] for s in seen[3:]] == ["s-1", "s-1"]  # the session, too
            await llm.aclose()
            await p.manager.limiter.aclose()
            await p.manager.store.primary.aclose()

    asyncio.run(run())


def test_the_router_maps_user_id_to_tenant_and_takes_priority() -> None:
    with pool(2) as p:
        router = RequestRouter(p.manager, max_wait=0)
        with spied(p.manager) as seen:
            assert router.send_chat("c1", "hi", user_id="u@example.com", priority=9)["success"]
            assert router.send_one_shot("yo", user_id="u2")["success"]
            assert router.send_one_shot("plain")["success"]
            res = asyncio.run(router.asend_chat("c2", "hey", user_id="u3", priority=-1))
            assert res["success"]
        assert _pt(seen) == [(9, "u@example.com"), (0, "u2"), (0, None), (-1, "u3")]
        assert seen[0]["affinity"] == "c1"
        bad = router.send_one_shot("x", priority=99999)
        assert not bad["success"] and "priority" in bad["error"]


def _litellm_router(p: Any) -> Any:
    from litellm import Router

    deps = [
        {
            "model_name": "pool",
            "litellm_params": {
                "model": f"openai/{GPT}",
                "api_key": p.secrets[f"API_KEY_{k.key_id.upper()}"],
                "api_base": p.provider.openai_url,
                "rpm": 100,
            },
            "model_info": {"id": k.key_id},
        }
        for k in p.keys
    ]
    return Router(model_list=deps, num_retries=0)


def test_the_litellm_router_reads_metadata_user_and_session() -> None:
    from rotating_llm.litellm import install

    with pool(2, kind="openai", model=GPT) as p:
        router = _litellm_router(p)
        settings = p.manager.settings
        inst = install(
            router,
            redis_url=settings.redis_url,
            key_prefix=settings.key_prefix + "ll:",
            window_seconds=30,
            max_wait=0,
        )
        try:
            msgs = [{"role": "user", "content": "hi"}]
            with spied(inst.manager) as seen:
                router.completion(
                    model="pool",
                    messages=msgs,
                    metadata={"tenant": "acme", "priority": 7, "session_id": "conv-9"},
                )
                router.completion(model="pool", messages=msgs, user="end-user-1")
                asyncio.run(
                    router.acompletion(
                        model="pool",
                        messages=msgs,
                        user="end-user-2",
                        metadata={"priority": -2, "conversation_id": "conv-10"},
                    )
                )
                router.completion(model="pool", messages=msgs)
            assert seen == [
                {"priority": 7, "tenant": "acme", "affinity": "conv-9"},
                {"priority": 0, "tenant": "end-user-1", "affinity": None},
                {"priority": -2, "tenant": "end-user-2", "affinity": "conv-10"},
                {"priority": 0, "tenant": None, "affinity": None},
            ]
            assert sum(s.served for s in p.provider.stats().values()) == 4
        finally:
            inst.close()


def test_odd_client_metadata_never_fails_a_litellm_request() -> None:
    """What a client sends (priority, tenant) is read leniently: numbers and numeric
    strings are rounded and clipped, long tenants become a stable digest, the rest is
    ignored; every request is served."""
    import hashlib

    from rotating_llm.litellm import install

    long_user = "u" * 300
    digest = "sha256:" + hashlib.sha256(long_user.encode()).hexdigest()
    cases: list[tuple[dict[str, Any], tuple[int, str | None]]] = [
        ({"metadata": {"priority": "urgent"}}, (0, None)),
        ({"metadata": {"priority": "7"}}, (7, None)),
        ({"metadata": {"priority": " -3 "}}, (-3, None)),
        ({"metadata": {"priority": 2.6}}, (3, None)),
        ({"metadata": {"priority": 5000}}, (1000, None)),
        ({"metadata": {"priority": "-1e9"}}, (-1000, None)),
        ({"metadata": {"priority": float("nan")}}, (0, None)),
        ({"metadata": {"priority": [1]}}, (0, None)),
        ({"metadata": {"priority": True}}, (0, None)),
        ({"user": long_user}, (0, digest)),
        ({"user": long_user, "metadata": {"priority": "9"}}, (9, digest)),
        ({"metadata": {"tenant": {"id": 1}}, "user": "bob"}, (0, "bob")),
        ({"metadata": {"tenant": 42}}, (0, "42")),
        ({"metadata": {"tenant": ""}, "user": "carol"}, (0, "carol")),
    ]
    with pool(2, kind="openai", model=GPT) as p:
        router = _litellm_router(p)
        settings = p.manager.settings
        inst = install(
            router,
            redis_url=settings.redis_url,
            key_prefix=settings.key_prefix + "odd:",
            window_seconds=30,
            max_wait=0,
        )
        try:
            msgs = [{"role": "user", "content": "hi"}]
            with spied(inst.manager) as seen:
                for extra, _ in cases[:7]:
                    router.completion(model="pool", messages=msgs, **extra)
                for extra, _ in cases[7:]:
                    asyncio.run(router.acompletion(model="pool", messages=msgs, **extra))
            assert _pt(seen) == [want for _, want in cases]
            assert sum(s.served for s in p.provider.stats().values()) == len(cases)
        finally:
            inst.close()
