"""A prompt | model | parser chain whose calls rotate over the pool's keys.

Run: ``python examples/langchain_chain.py`` (uses the simulator unless KEY_STORE_PATH is set).
"""

from __future__ import annotations

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_demo_pool import demo_model


def main() -> None:
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You answer in one sentence."), ("human", "Explain {topic}.")]
    )
    with demo_model(max_wait=5) as llm:
        chain = prompt | llm
        topics = ["sliding windows", "hash tags", "API key rotation", "jittered backoff"]
        for topic, reply in zip(topics, chain.batch([{"topic": t} for t in topics]), strict=True):
            meta = reply.response_metadata
            print(f"{topic!r}: key={meta['key_id']} attempts={meta['attempts']}")
            print("   ", StrOutputParser().invoke(reply))
        print("streamed:", "".join(c.content for c in chain.stream({"topic": "Redis Lua"})))


if __name__ == "__main__":
    main()
