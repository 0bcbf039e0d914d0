"""The async faces: the LangChain face's provider models built once per key (per event
loop for async calls, in a worker thread), reused, rebuilt for a rotated secret, dropped
with their key; and no loop step of either async face (LangChain, LiteLLM) blocking.

Against the simulator (a real HTTP server) through the real provider clients.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _lc_fixtures import AIOHTTP_INHERITANCE, FLASH, GPT, Pool, apool, pool

from rotating_llm import tokens
from rotating_llm.langchain import ProviderSpec, RotatingChatModel
from rotating_llm.langchain._providers import gemini_model, openai_model

pytestmark = [pytest.mark.redis, pytest.mark.filterwarnings(AIOHTTP_INHERITANCE)]


def recording(
    factory: Callable[[ProviderSpec], Any], delay: float = 0.0
) -> tuple[Callable[[ProviderSpec], Any], list[tuple[str, int, Any]]]:
    """``factory`` that records (key id, building thread, model) of every build."""
    built: list[tuple[str, int, Any]] = []

    def build(spec: ProviderSpec) -> Any:
        if delay:
            threading.Event().wait(delay)  # a slow build: concurrent callers must share it
        model = factory(spec)
        built.append((spec.key_id, threading.get_ident(), model))
        return model

    return build, built


def chat(
    p: Pool, factory: Callable[[ProviderSpec], Any], kind: str = "gemini"
) -> RotatingChatModel:
    return RotatingChatModel(
        model=GPT if kind == "openai" else FLASH,
        key_manager=p.manager,
        max_wait=5,
        provider_factories={kind: factory},
    )


async def test_the_async_model_is_built_once_off_the_loop_and_reused() -> None:
    async with apool(1) as p:
        factory, built = recording(gemini_model)
        llm = chat(p, factory)
        try:
            for _ in range(4):
                assert (await llm.ainvoke("hello")).content
            assert len(built) == 1
            assert built[0][1] != threading.get_ident()  # built in a worker thread
            assert await llm._providers.acached() == [("k0", FLASH)]
            assert p.stats("k0").served == 4
            # the sync path has a table of its own: one more build, then reused
            llm.invoke("hello")
            llm.invoke("hello")
            assert len(built) == 2
            assert llm._providers.cached() == [("k0", FLASH)]
        finally:
            await llm.aclose()
        assert await llm._providers.acached() == []
        assert llm._providers.cached() == []


async def test_a_rotated_secret_builds_a_new_model() -> None:
    async with apool(1) as p:
        factory, built = recording(gemini_model)
        llm = chat(p, factory)
        try:
            await llm.ainvoke("hello")
            old = p.secret("k0")
            p.secrets["API_KEY_K0"] = old + "-rotated"  # the env store reads this mapping
            p.manager.secret_store.invalidate("k0")
            await llm.ainvoke("hello")
            await llm.ainvoke("hello")
            assert len(built) == 2
            assert built[0][2] is not built[1][2]
            assert await llm._providers.acached() == [("k0", FLASH)]  # the old one is gone
            assert p.provider.key_stats(old).served == 1
            assert p.provider.key_stats(old + "-rotated").served == 2
        finally:
            await llm.aclose()


async def test_removing_or_replacing_a_key_drops_its_models(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rotating_llm.langchain import _providers

    monkeypatch.setattr(_providers, "RETIRE_SECONDS", 0.0)  # close dropped models at once
    async with apool(2, kind="openai", model=GPT) as p:
        factory, built = recording(openai_model)
        llm = chat(p, factory, kind="openai")
        try:
            for _ in range(20):  # most headroom spreads the calls over both keys
                await llm.ainvoke("hello")
                await llm.ainvoke("hello")
                llm.invoke("hello")
                llm.invoke("hello")
                if {k for k, _, _ in built} == {"k0", "k1"} and len(built) == 4:
                    break
            assert sorted(await llm._providers.acached()) == [("k0", GPT), ("k1", GPT)]
            async_k1 = [m for k, t, m in built if k == "k1" and t != threading.get_ident()]
            p.manager.remove_key("k1")
            assert await llm._providers.acached() == [("k0", GPT)]
            assert llm._providers.cached() == [("k0", GPT)]
            for _ in range(20):  # the dropped model's async client is closed on its loop
                if async_k1[0].http_async_client.is_closed:
                    break
                await asyncio.sleep(0.01)
            assert async_k1[0].http_async_client.is_closed
            before = len(built)
            await llm.ainvoke("hello")
            assert len(built) == before  # k0's model is still the one in use
            # set_keys / reload_keys with the keys as they were: the models stay
            p.manager.set_keys([k.model_copy() for k in p.manager.keys])
            assert await llm._providers.acached() == [("k0", GPT)]
            await llm.ainvoke("hello")
            assert len(built) == before
            # a key that changed (another endpoint, limits...): its models go
            p.manager.set_keys([k.model_copy(update={"rpm": k.rpm + 1}) for k in p.manager.keys])
            assert await llm._providers.acached() == []
            await llm.ainvoke("hello")
            assert len(built) == before + 1
        finally:
            await llm.aclose()


async def test_a_model_dropped_during_a_call_is_not_closed_under_it() -> None:
    """Its key changed while a call streams through its model: the model leaves the cache
    at once, but is closed only ``RETIRE_SECONDS`` later (or with its loop), so the stream
    ends normally."""
    async with apool(1, kind="openai", model=GPT) as p:
        factory, built = recording(openai_model)
        llm = chat(p, factory, kind="openai")
        try:
            chunks = []
            async for chunk in llm.astream("tell me a long story"):
                if not chunks:  # mid-stream: the key changes, its model is dropped
                    p.manager.set_keys(
                        [k.model_copy(update={"rpm": k.rpm + 1}) for k in p.manager.keys]
                    )
                    assert await llm._providers.acached() == []
                chunks.append(chunk)
            assert len(chunks) > 1
            assert not built[0][2].http_async_client.is_closed
            await llm.ainvoke("hello")
            assert len(built) == 2  # the changed key got a model of its own
        finally:
            await llm.aclose()
        assert all(m.http_async_client.is_closed for _, _, m in built)  # closed with aclose


async def test_concurrent_first_calls_share_one_build() -> None:
    async with apool(1) as p:
        factory, built = recording(gemini_model, delay=0.3)
        llm = chat(p, factory)
        try:
            answers = await asyncio.gather(*(llm.ainvoke(f"hello {i}") for i in range(8)))
            assert all(a.content for a in answers)
            assert len(built) == 1
            assert p.stats("k0").served == 8
        finally:
            await llm.aclose()


async def test_a_cancelled_first_caller_leaves_the_build_to_the_others() -> None:
    async with apool(1) as p:
        factory, built = recording(gemini_model, delay=0.3)
        llm = chat(p, factory)
        try:
            first = asyncio.ensure_future(llm.ainvoke("hello"))
            second = asyncio.ensure_future(llm.ainvoke("hello"))
            await asyncio.sleep(0.1)  # both wait on the one build
            first.cancel()
            assert (await second).content
            assert first.cancelled()
            assert len(built) == 1
            assert sum(s["rpm_usage"] for s in p.manager.get_all_key_statuses()) >= 1
        finally:
            await llm.aclose()


def test_a_loop_that_ends_closes_its_models() -> None:
    """``asyncio.run`` shuts down async generators before closing its loop: the cache's
    models of that loop are closed then, without an explicit ``aclose``."""
    with pool(1, kind="openai", model=GPT) as p:
        factory, built = recording(openai_model)
        llm = chat(p, factory, kind="openai")

        async def calls() -> None:
            await llm.ainvoke("hello")
            await llm.ainvoke("hello")
            await p.manager.limiter.aclose()
            await p.manager.store.primary.aclose()

        asyncio.run(calls())
        asyncio.run(calls())  # another loop: a model of its own
        assert len(built) == 2
        assert all(m.http_async_client.is_closed for _, _, m in built)


async def test_the_cache_never_shows_a_secret() -> None:
    async with apool(2) as p:
        llm = chat(p, gemini_model)
        try:
            await llm.ainvoke("hello")
            llm.invoke("hello")
            cache = llm._providers
            tables = [cache._sync, *cache._loops.values()]
            shown = " ".join(
                [repr(cache), str(cache), repr(llm)]
                + [repr(list(t.models)) for t in tables]
                + [repr(t.models) for t in tables]
            )
            assert "models=1" in repr(cache) and "async_models=1" in repr(cache)
            for kid in ("k0", "k1"):
                secret = p.secret(kid)
                assert secret not in shown
                assert hashlib.sha256(secret.encode()).hexdigest()[:16] not in shown
        finally:
            await llm.aclose()


async def test_the_tokenizer_loads_off_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "_loaded", {})
    loaded_in: list[int] = []
    real = tokens._load_encoding

    def load(name: str) -> Any:
        loaded_in.append(threading.get_ident())
        return real(name)

    monkeypatch.setattr(tokens, "_load_encoding", load)
    async with apool(1) as p:
        llm = chat(p, gemini_model)
        try:
            await llm.ainvoke("hello")
            await llm.ainvoke("hello")
        finally:
            await llm.aclose()
    assert len(loaded_in) == 1
    assert loaded_in[0] != threading.get_ident()
    assert await tokens.aprepare() is True  # loaded: answered without a thread
    assert len(loaded_in) == 1


@pytest.mark.slow
@pytest.mark.multiprocess
def test_no_loop_step_of_the_async_faces_blocks(redis_url: str, prefix: str) -> None:
    """``RotatingChatModel.ainvoke`` and ``astream`` and the LiteLLM face's
    ``router.acompletion`` (plain and streamed), 8 tasks on one loop after a warm-up: every
    call answered (streams in more than one chunk); no step used more than 10 ms of CPU or
    slept more than 10 ms (see the worker for how preemption and GIL waits are told apart), and no
    blocking socket was used on the loop's thread from the first call on (Redis
    connection set-up and settlement included). The worker's control steps (a sleep, a
    spin, a sync Redis PING on the loop) show the instruments catch what they look for.

    In a process of its own: this test session's threads must not share its GIL.
    """
    from rotating_llm.testing import FakeProvider

    with FakeProvider() as fp:
        proc = subprocess.run(
            [
                sys.executable,
                str(Path(__file__).with_name("_face_block_worker.py")),
                redis_url,
                prefix,
                fp.url,
                fp.openai_url,
            ],
            capture_output=True,
            timeout=240,
            text=True,
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["per_round"] == 4  # ainvoke, astream, acompletion, acompletion(stream)
    assert report["warm"] == 6 * 4
    assert report["served"] == 6 * 8 * 4
    assert report["measured_steps"] > 500
    assert report["blocking"] == []
    assert report["sync_sockets"] == []
    assert report["control"]["blocking"] == 2
    assert report["control"]["sync_sockets"] >= 1
