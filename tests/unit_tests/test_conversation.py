"""The core conversation store on the embedded store, and its message format."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
from langchain_core.messages import (
    AIMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    message_to_dict,
    messages_from_dict,
)

from rotating_llm import Settings
from rotating_llm.conversation import (
    ConversationError,
    ConversationStore,
    get_conversation_store,
    make_message,
    normalize_message,
)


@pytest.fixture
def store() -> ConversationStore:
    return ConversationStore(Settings(redis_url=None, key_prefix=f"u{uuid.uuid4().hex[:8]}:"))


@pytest.mark.multiprocess
def test_core_conversation_imports_no_framework() -> None:
    code = (
        "import sys, rotating_llm.conversation, rotating_llm; "
        "bad = [m for m in sys.modules if m.startswith(('langchain', 'litellm'))]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_make_message_is_what_langchain_reads_back() -> None:
    msgs = [
        make_message("system", "be brief"),
        make_message("user", "hi", id="h1"),
        make_message(
            "assistant",
            "",
            id="a1",
            tool_calls=[{"name": "add", "args": {"a": 1}, "id": "c1", "type": "tool_call"}],
            usage_metadata={"input_tokens": 3, "output_tokens": 4, "total_tokens": 7},
        ),
        make_message("tool", "1", tool_call_id="c1"),
    ]
    back = messages_from_dict(msgs)
    assert [type(m) for m in back] == [SystemMessage, HumanMessage, AIMessage, ToolMessage]
    ai = back[2]
    assert isinstance(ai, AIMessage)
    assert ai.tool_calls[0]["id"] == "c1" and ai.usage_metadata is not None
    assert ai.usage_metadata["total_tokens"] == 7
    assert [message_to_dict(m) for m in back] == msgs


def test_normalize_accepts_role_form_and_rejects_garbage() -> None:
    assert normalize_message({"role": "user", "content": "x"})["type"] == "human"
    with pytest.raises(ConversationError, match="message 3: 'type' must be one of"):
        normalize_message({"type": "robot", "data": {"content": "x"}}, 3)
    with pytest.raises(ConversationError, match="'data' must be a mapping with 'content'"):
        normalize_message({"type": "human", "data": {}})
    with pytest.raises(ConversationError, match="unknown message role 'wizard'"):
        make_message("wizard", "x")
    with pytest.raises(ConversationError, match="expected a mapping"):
        normalize_message("hello")  # type: ignore[arg-type]


def test_append_read_metadata(store: ConversationStore) -> None:
    n = store.append_turn(
        "c1",
        [make_message("user", "hi"), make_message("assistant", "hello")],
        tokens=12,
        model="gemini-2.5-flash",
        key_id="k1",
    )
    assert n == 2
    store.append_turn("c1", [make_message("user", "more")], tokens=3, key_id="k2")
    msgs = store.get_messages("c1")
    assert [m["data"]["content"] for m in msgs] == ["hi", "hello", "more"]
    assert [m["data"]["content"] for m in store.get_messages("c1", last_n=1)] == ["more"]
    assert store.get_messages("c1", last_n=0) == []
    meta = store.get_metadata("c1")
    assert meta is not None
    assert meta["message_count"] == 3 and meta["total_tokens"] == 15 and meta["turn_count"] == 2
    assert meta["last_model"] == "gemini-2.5-flash" and meta["last_key_id"] == "k2"
    assert meta["created_at"] <= meta["updated_at"]
    assert 0 < meta["ttl_seconds"] <= store.ttl_seconds


def test_truncate_and_delete(store: ConversationStore) -> None:
    store.append_turn("c", [make_message("user", str(i)) for i in range(5)])
    assert store.truncate("c", 2) == 3
    assert [m["data"]["content"] for m in store.get_messages("c")] == ["3", "4"]
    assert store.get_metadata("c")["message_count"] == 2  # type: ignore[index]
    assert store.truncate("c", 0) == 2
    assert store.get_messages("c") == []
    assert store.delete("c") is True
    assert store.delete("c") is False
    assert store.get_metadata("c") is None
    assert store.truncate("unknown", 3) == 0


def test_keys_share_the_conversation_hash_tag(store: ConversationStore) -> None:
    msgs, meta = store.keys_for("user:42")
    assert msgs == f"{store.store.prefix}conv:messages:{{user:42}}"
    assert meta == f"{store.store.prefix}conv:meta:{{user:42}}"


@pytest.mark.parametrize(
    ("conv_id", "problem"),
    [("", "non-empty"), ("a{b}", "hash tag"), ("x" * 300, "at most"), ("a\nb", "control")],
)
def test_bad_conversation_ids_are_named(
    store: ConversationStore, conv_id: str, problem: str
) -> None:
    with pytest.raises(ConversationError, match=problem):
        store.get_messages(conv_id)


def test_bad_turns_are_named(store: ConversationStore) -> None:
    with pytest.raises(ConversationError, match="at least one message"):
        store.append_turn("c", [])
    with pytest.raises(ConversationError, match="not one message"):
        store.append_turn("c", make_message("user", "x"))  # type: ignore[arg-type]
    with pytest.raises(ConversationError, match="tokens must be an integer"):
        store.append_turn("c", [make_message("user", "x")], tokens=-1)
    with pytest.raises(ConversationError, match="keep_last_n"):
        store.truncate("c", -1)
    with pytest.raises(ConversationError, match="ttl_seconds"):
        ConversationStore(Settings(redis_url=None), ttl_seconds=0)
    assert store.get_metadata("c") is None  # nothing was written


def test_health_check_reports_the_store(store: ConversationStore) -> None:
    report = store.health_check()
    assert report["healthy"] is True and report["store"] == "embedded"


def test_get_conversation_store_is_the_default() -> None:
    first = get_conversation_store(Settings(redis_url=None, conversation_ttl_seconds=60))
    assert get_conversation_store() is first
    assert first.ttl_seconds == 60


async def test_async_twins(store: ConversationStore) -> None:
    await store.aappend_turn("a", [make_message("user", "hi")], tokens=2, model="m")
    await store.aappend_message("a", make_message("assistant", "yo"), tokens=3)
    assert [m["data"]["content"] for m in await store.aget_messages("a")] == ["hi", "yo"]
    meta = await store.aget_metadata("a")
    assert meta is not None and meta["total_tokens"] == 5 and meta["message_count"] == 2
    assert await store.atruncate("a", 1) == 1
    assert (await store.ahealth_check())["healthy"] is True
    assert await store.adelete("a") is True
    assert await store.aget_messages("a") == []
    await store.aclose()
