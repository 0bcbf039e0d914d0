"""A tool-calling agent loop: the model asks for tools, we run them, it answers.

Every model call may land on a different key; the conversation is sent whole each time.
Run: ``python examples/langchain_agent.py``.
"""

from __future__ import annotations

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langchain_demo_pool import demo_model


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


TOOLS = {t.name: t for t in (add, multiply)}


def main() -> None:
    with demo_model(max_wait=5) as llm:
        agent = llm.bind_tools(list(TOOLS.values()))
        messages: list[BaseMessage] = [
            SystemMessage("Use the tools for arithmetic."),
            HumanMessage("What is 6 multiply 7?"),
        ]
        for _ in range(5):  # a bounded loop
            reply = agent.invoke(messages)
            messages.append(reply)
            print(f"model (key {reply.response_metadata['key_id']}):", reply.content or "")
            if not reply.tool_calls:
                break
            for call in reply.tool_calls:
                result = TOOLS[call["name"]].invoke(call["args"])
                print(f"  tool {call['name']}({call['args']}) -> {result}")
                messages.append(ToolMessage(str(result), tool_call_id=call["id"]))


if __name__ == "__main__":
    main()
