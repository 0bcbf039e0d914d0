"""Workers for the conversation contention tests (spawned processes import this by name)."""

from __future__ import annotations

from typing import Any

from rotating_llm import Settings

SYSTEM = "You are the one system prompt."


def open_and_write(url: str, prefix: str, conv_id: str, worker: int, barrier: Any) -> None:
    """Read the conversation (empty: a stale read), wait for every worker, then write the
    first turn with the system prompt: even workers through the store, odd ones through
    ``RedisChatMessageHistory``."""
    settings = Settings(redis_url=url, key_prefix=prefix)
    if worker % 2 == 0:
        from rotating_llm.conversation import ConversationStore, make_message

        store = ConversationStore(settings)
        assert store.get_messages(conv_id) == []
        barrier.wait(120)
        store.append_turn(
            conv_id,
            [make_message("user", f"w{worker}-q"), make_message("assistant", f"w{worker}-a")],
            system_message=SYSTEM,
        )
        store.close()
    else:
        from langchain_core.messages import AIMessage, HumanMessage

        from rotating_llm.langchain import RedisChatMessageHistory

        history = RedisChatMessageHistory(conv_id, settings=settings, system_message=SYSTEM)
        assert history.messages == []
        barrier.wait(120)
        history.add_messages([HumanMessage(f"w{worker}-q"), AIMessage(f"w{worker}-a")])
        history.store.close()
