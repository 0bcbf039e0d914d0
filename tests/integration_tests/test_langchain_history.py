"""``RedisChatMessageHistory`` on the real Redis, with ``RotatingChatModel`` rotating keys."""

from __future__ import annotations

import uuid

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables.history import RunnableWithMessageHistory

from rotating_llm import Settings
from rotating_llm.conversation import ConversationError, ConversationStore, make_message
from rotating_llm.langchain import RedisChatMessageHistory, RotatingChatModel

try:  # tests/*/ are packages (same basenames in unit_tests and integration_tests)
    from ._lc_fixtures import AIOHTTP_INHERITANCE, pool, redis_url, unique_prefix
except ImportError:  # rootdir-less layout: this directory is on sys.path
    from _lc_fixtures import (  # type: ignore[no-redef]
        AIOHTTP_INHERITANCE,
        pool,
        redis_url,
        unique_prefix,
    )

pytestmark = [pytest.mark.redis, pytest.mark.filterwarnings(AIOHTTP_INHERITANCE)]


def history(session: str, prefix: str) -> RedisChatMessageHistory:
    return RedisChatMessageHistory(session, redis_url=redis_url(), key_prefix=prefix)


@pytest.mark.filterwarnings(
    "ignore:RunnableWithMessageHistory is deprecated:langchain_core._api.LangChainDeprecationWarning"
)
def test_turns_on_different_keys_keep_the_whole_history_in_order() -> None:
    prefix = unique_prefix()
    with pool(4, key_rpm=1) as p:  # one request per key: every turn lands on another key
        llm = RotatingChatModel(model=p.keys[0].model_name, key_manager=p.manager)
        prompt = ChatPromptTemplate.from_messages(
            [("system", "You are terse."), MessagesPlaceholder("history"), ("human", "{q}")]
        )
        chat = RunnableWithMessageHistory(
            prompt | llm,
            lambda sid: history(sid, prefix),
            input_messages_key="q",
            history_messages_key="history",
        )
        cfg = {"configurable": {"session_id": "conv-1"}}
        keys = [chat.invoke({"q": f"turn {i}"}, cfg).response_metadata["key_id"] for i in range(4)]
        assert sorted(keys) == ["k0", "k1", "k2", "k3"]
        msgs = history("conv-1", prefix).messages
        assert [type(m) for m in msgs] == [HumanMessage, AIMessage] * 4
        assert [m.content for m in msgs[::2]] == [f"turn {i}" for i in range(4)]
        assert [m.response_metadata["key_id"] for m in msgs[1::2]] == keys
        # each later turn sent the whole history before it to its (different) key
        assert p.stats(keys[3]).input_tokens > p.stats(keys[0]).input_tokens
        meta = history("conv-1", prefix).get_metadata()
        assert meta is not None
        assert meta["message_count"] == 8 and meta["last_key_id"] == keys[-1]
        assert meta["last_model"] == p.keys[0].model_name
        usage = [m.usage_metadata for m in msgs[1::2] if isinstance(m, AIMessage)]
        assert meta["total_tokens"] == sum(u["total_tokens"] for u in usage if u)


def test_tool_calls_ids_and_usage_survive() -> None:
    prefix = unique_prefix()
    h = history("tools", prefix)
    ai = AIMessage(
        "",
        id="run-1",
        tool_calls=[{"name": "add", "args": {"a": 1, "b": 2}, "id": "call-1"}],
        usage_metadata={"input_tokens": 5, "output_tokens": 6, "total_tokens": 11},
        response_metadata={"key_id": "k3", "model_name": "gemini-2.5-flash"},
    )
    sent = [HumanMessage("add 1 and 2", id="h-1"), ai, ToolMessage("3", tool_call_id="call-1")]
    h.add_messages(sent)
    assert h.messages == sent
    meta = h.get_metadata()
    assert meta is not None
    assert meta["total_tokens"] == 11 and meta["last_key_id"] == "k3"
    assert meta["turn_count"] == 1


def test_core_and_langchain_read_each_other() -> None:
    prefix = unique_prefix()
    settings = Settings(redis_url=redis_url(), key_prefix=prefix)
    store = ConversationStore(settings)
    store.append_turn("x", [make_message("user", "from the core"), make_message("ai", "ok")])
    h = RedisChatMessageHistory("x", store=store)
    assert [m.content for m in h.messages] == ["from the core", "ok"]
    h.add_message(AIMessage("from langchain", id="a-2"))
    assert store.get_messages("x")[-1]["data"]["id"] == "a-2"
    assert h.truncate(1) == 2
    h.clear()
    assert store.get_messages("x") == []
    store.close()


async def test_native_async_methods() -> None:
    prefix = unique_prefix()
    h = history("async", prefix)
    await h.aadd_messages([HumanMessage("hi"), AIMessage("hello")])
    assert [m.content for m in await h.aget_messages()] == ["hi", "hello"]
    await h.aclear()
    assert await h.aget_messages() == []
    await h.store.aclose()
    h.store.close()


def test_bad_session_id_is_named() -> None:
    with pytest.raises(ConversationError, match="hash tag"):
        RedisChatMessageHistory("a{b}", redis_url=redis_url())


def test_history_id_is_random_enough() -> None:
    sid = uuid.uuid4().hex
    h = history(sid, unique_prefix())
    assert h.messages == [] and repr(h).startswith("RedisChatMessageHistory(")


def test_parity_with_langchain_redis_len_ttl_id_and_session_id_errors() -> None:
    prefix = unique_prefix()
    h = RedisChatMessageHistory(
        f"parity-{uuid.uuid4().hex[:6]}", redis_url=redis_url(), key_prefix=prefix, ttl=120
    )
    assert len(h) == 0 and h.id == h.session_id
    h.add_messages([HumanMessage("hi"), AIMessage("hello")])
    h.add_message(HumanMessage("again"))
    assert len(h) == 3 == len(h.messages)
    msgs_key, _ = h.store.keys_for(h.session_id)
    assert 0 < h.store.store.sync.ttl(msgs_key) <= 120  # the ttl= parameter applies
    h.clear()
    assert len(h) == 0
    for bad in ("", None, "a{b}"):
        with pytest.raises(ValueError, match="session_id") as info:
            RedisChatMessageHistory(bad, redis_url=redis_url(), key_prefix=prefix)  # type: ignore[arg-type]
        assert isinstance(info.value, ConversationError)
        assert "conv_id" not in str(info.value)
