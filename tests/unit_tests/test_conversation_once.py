"""System prompts stored once and idempotent turns, on the embedded store (same scripts)."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from rotating_llm import Settings
from rotating_llm.conversation import ConversationError, ConversationStore, make_message
from rotating_llm.langchain import RedisChatMessageHistory


@pytest.fixture
def store() -> ConversationStore:
    return ConversationStore(Settings(redis_url=None, key_prefix=f"u{uuid.uuid4().hex[:8]}:"))


def _turn(tag: str) -> list[dict[str, object]]:
    return [make_message("user", f"{tag}-q"), make_message("assistant", f"{tag}-a")]


def _types(store: ConversationStore, conv: str) -> list[str]:
    return [m["type"] for m in store.get_messages(conv)]


def test_system_message_is_stored_only_into_an_empty_conversation(
    store: ConversationStore,
) -> None:
    # Both writers read the conversation empty; the script decides, not their read.
    assert store.get_messages("c") == []
    assert store.append_turn("c", _turn("a"), system_message="Be brief.") == 3
    assert store.append_turn("c", _turn("b"), system_message="Be brief.") == 5
    msgs = store.get_messages("c")
    assert [m["type"] for m in msgs] == ["system", "human", "ai", "human", "ai"]
    assert msgs[0]["data"]["content"] == "Be brief."
    assert store.get_metadata("c")["turn_count"] == 2  # type: ignore[index]


def test_system_message_as_a_message_mapping(store: ConversationStore) -> None:
    store.append_turn("m", _turn("a"), system_message={"role": "system", "content": "sys"})
    assert _types(store, "m") == ["system", "human", "ai"]


def test_same_idempotency_key_stores_the_turn_once(store: ConversationStore) -> None:
    first = store.append_turn("i", _turn("a"), tokens=7, idempotency_key="turn-1")
    again = store.append_turn("i", _turn("a"), tokens=7, idempotency_key="turn-1")
    assert first == again == 2
    meta = store.get_metadata("i")
    assert meta is not None and meta["turn_count"] == 1 and meta["total_tokens"] == 7
    assert store.append_turn("i", _turn("b"), idempotency_key="turn-2") == 4


def test_twenty_threads_resending_one_turn_store_it_once(store: ConversationStore) -> None:
    barrier = threading.Barrier(20)

    def resend() -> None:
        barrier.wait(30)
        store.append_turn("t", _turn("x"), system_message="sys", idempotency_key="k")

    threads = [threading.Thread(target=resend) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _types(store, "t") == ["system", "human", "ai"]


def test_turn_ids_are_per_conversation_and_go_with_delete(store: ConversationStore) -> None:
    store.append_turn("a", _turn("a"), idempotency_key="same")
    assert store.append_turn("b", _turn("b"), idempotency_key="same") == 2
    assert store.store.sync.exists(store.turns_key("a")) == 1
    assert store.delete("a") is True
    assert store.store.sync.exists(store.turns_key("a")) == 0
    assert store.append_turn("a", _turn("a"), idempotency_key="same") == 2


def test_without_a_key_every_call_is_a_new_turn(store: ConversationStore) -> None:
    store.append_turn("n", _turn("a"))
    store.append_turn("n", _turn("a"))
    assert len(store.get_messages("n")) == 4


def test_async_twin_is_idempotent_too(store: ConversationStore) -> None:
    async def run() -> list[int]:
        return [
            await store.aappend_turn("as", _turn("a"), system_message="s", idempotency_key="k")
            for _ in range(3)
        ]

    assert asyncio.run(run()) == [3, 3, 3]
    assert _types(store, "as") == ["system", "human", "ai"]


@pytest.mark.parametrize(
    ("key", "problem"), [("", "non-empty"), ("x" * 300, "at most"), ("a\nb", "control"), (5, "")]
)
def test_bad_idempotency_keys_are_named(
    store: ConversationStore, key: object, problem: str
) -> None:
    with pytest.raises(ConversationError, match=f"idempotency_key.*{problem}"):
        store.append_turn("c", _turn("a"), idempotency_key=key)  # type: ignore[arg-type]
    assert store.get_messages("c") == []


def test_bad_system_message_is_named(store: ConversationStore) -> None:
    with pytest.raises(ConversationError, match="system_message"):
        store.append_turn("c", _turn("a"), system_message={"type": "nope", "data": {}})
    assert store.get_messages("c") == []


def test_history_stores_its_system_message_once(store: ConversationStore) -> None:
    one = RedisChatMessageHistory("h", store=store, system_message="You help.")
    two = RedisChatMessageHistory("h", store=store, system_message=SystemMessage("You help."))
    assert one.messages == two.messages == []  # both read it empty
    one.add_messages([HumanMessage("q1"), AIMessage("a1")])
    two.add_messages([HumanMessage("q2"), AIMessage("a2")])
    got = one.messages
    assert [type(m).__name__ for m in got] == [
        "SystemMessage",
        "HumanMessage",
        "AIMessage",
        "HumanMessage",
        "AIMessage",
    ]
    assert got[0].content == "You help."


def test_history_resend_with_the_same_key_is_stored_once(store: ConversationStore) -> None:
    h = RedisChatMessageHistory("r", store=store)
    turn = [HumanMessage("q"), AIMessage("a")]
    h.add_messages(turn, idempotency_key="t1")
    h.add_messages(turn, idempotency_key="t1")
    asyncio.run(h.aadd_messages(turn, idempotency_key="t1"))
    assert len(h) == 2


def test_history_refuses_a_bad_system_message(store: ConversationStore) -> None:
    with pytest.raises(ConversationError, match="system_message"):
        RedisChatMessageHistory("x", store=store, system_message=42)  # type: ignore[arg-type]
