"""A chat whose history lives in Redis and survives key rotation between turns.

Each turn may be served by another key; ``RedisChatMessageHistory`` keeps the whole
conversation (in LangChain's ``message_to_dict`` form) under ``conv:messages:{<id>}``.
Run: ``python examples/langchain_history.py`` (REDIS_URL unset: the embedded store).
"""

from __future__ import annotations

import uuid
import warnings

from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables.history import RunnableWithMessageHistory
from langchain_demo_pool import demo_model

from rotating_llm import Settings
from rotating_llm.conversation import ConversationStore
from rotating_llm.langchain import RedisChatMessageHistory


def main() -> None:
    store = ConversationStore(Settings.from_env())  # one store for every session
    session = f"demo-{uuid.uuid4().hex[:8]}"
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You are terse."), MessagesPlaceholder("history"), ("human", "{question}")]
    )
    with demo_model(max_wait=5) as llm, warnings.catch_warnings():
        # langchain-core 1.x deprecates RunnableWithMessageHistory in favour of LangGraph
        warnings.simplefilter("ignore", DeprecationWarning)
        chat = RunnableWithMessageHistory(
            prompt | llm,
            lambda sid: RedisChatMessageHistory(sid, store=store),
            input_messages_key="question",
            history_messages_key="history",
        )
        config = {"configurable": {"session_id": session}}
        for question in ["Hi, I'm Ada.", "What is a hash tag?", "What was my name?", "Bye!"]:
            reply = chat.invoke({"question": question}, config)
            print(f"[{reply.response_metadata['key_id']}] {question} -> {reply.content}")
    history = RedisChatMessageHistory(session, store=store)
    print(f"{len(history.messages)} messages kept; metadata: {history.get_metadata()}")
    history.clear()


if __name__ == "__main__":
    main()
