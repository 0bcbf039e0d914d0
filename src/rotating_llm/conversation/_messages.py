"""Messages in LangChain's ``message_to_dict`` form, written without importing LangChain.

A stored message is ``{"type": <type>, "data": {"content": ..., "type": <type>, ...}}``,
exactly what ``langchain_core.messages.message_to_dict`` produces, so a conversation
written by one face is read back by any other with tool calls, ids and usage intact.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from rotating_llm.errors import ConversationError

__all__ = [
    "MESSAGE_TYPES",
    "ConversationError",
    "decode_message",
    "encode_message",
    "make_message",
    "normalize_message",
]

#: Message types LangChain's ``messages_from_dict`` understands.
MESSAGE_TYPES = frozenset(
    {
        "human",
        "ai",
        "system",
        "tool",
        "function",
        "chat",
        "developer",
        "HumanMessageChunk",
        "AIMessageChunk",
        "SystemMessageChunk",
        "ToolMessageChunk",
        "FunctionMessageChunk",
        "ChatMessageChunk",
    }
)

#: OpenAI-style roles and the LangChain type they map to.
_ROLES = {
    "user": "human",
    "human": "human",
    "assistant": "ai",
    "ai": "ai",
    "model": "ai",
    "system": "system",
    "tool": "tool",
    "function": "function",
}


def make_message(role: str, content: Any, **fields: Any) -> dict[str, Any]:
    """Build one message in ``message_to_dict`` form.

    Args:
        role: ``user``/``human``, ``assistant``/``ai``, ``system``, ``tool`` or ``function``.
        content: A string or a list of content blocks.
        **fields: Other message fields (``id``, ``name``, ``tool_calls``,
            ``tool_call_id``, ``usage_metadata``, ``response_metadata``, ...).

    Raises:
        ConversationError: ``role`` is unknown.
    """
    kind = _ROLES.get(role)
    if kind is None:
        raise ConversationError(f"unknown message role {role!r}; use one of {sorted(_ROLES)}")
    data: dict[str, Any] = {
        "content": content,
        "additional_kwargs": {},
        "response_metadata": {},
        "type": kind,
        "name": None,
        "id": None,
    }
    if kind == "ai":
        data.update(tool_calls=[], invalid_tool_calls=[], usage_metadata=None)
    if kind == "tool":
        data.update(tool_call_id=None, artifact=None, status="success")
    data.update(fields)
    return {"type": kind, "data": data}


def normalize_message(message: Mapping[str, Any], index: int = 0) -> dict[str, Any]:
    """Check one message and return it in ``message_to_dict`` form.

    Accepts the stored form itself, or the short form ``{"role": ..., "content": ...}``.

    Raises:
        ConversationError: naming the message's index and what is wrong.
    """
    if not isinstance(message, Mapping):
        raise ConversationError(
            f"message {index}: expected a mapping, got {type(message).__name__}"
        )
    if "role" in message and "type" not in message:
        fields = {k: v for k, v in message.items() if k not in ("role", "content")}
        if "content" not in message:
            raise ConversationError(f"message {index}: missing 'content'")
        return make_message(str(message["role"]), message["content"], **fields)
    kind = message.get("type")
    data = message.get("data")
    if not isinstance(kind, str) or kind not in MESSAGE_TYPES:
        raise ConversationError(
            f"message {index}: 'type' must be one of {sorted(MESSAGE_TYPES)}, got {kind!r}"
        )
    if not isinstance(data, Mapping) or "content" not in data:
        raise ConversationError(f"message {index}: 'data' must be a mapping with 'content'")
    content = data["content"]
    if not isinstance(content, (str, list)):
        raise ConversationError(
            f"message {index}: 'content' must be a string or a list, got {type(content).__name__}"
        )
    return {"type": kind, "data": dict(data)}


def encode_message(message: Mapping[str, Any], index: int = 0) -> str:
    """Normalise ``message`` and serialise it to compact JSON.

    Raises:
        ConversationError: the message is invalid or not JSON-serialisable.
    """
    try:
        normal = normalize_message(message, index)
        text = json.dumps(normal, separators=(",", ":"), ensure_ascii=False)
        text.encode("utf-8")  # a lone surrogate cannot be stored
    except RecursionError:
        raise ConversationError(f"message {index}: nested too deeply to store") from None
    except UnicodeEncodeError as exc:
        raise ConversationError(
            f"message {index}: not valid Unicode text (position {exc.start}: {exc.reason})"
        ) from None
    except (TypeError, ValueError) as exc:
        raise ConversationError(f"message {index}: not JSON-serialisable: {exc}") from exc
    return text


def decode_message(raw: str, conv_id: str, index: int) -> dict[str, Any]:
    """Parse one stored message.

    Raises:
        ConversationError: the stored value is not a message.
    """
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ConversationError(
            f"conversation {conv_id!r}: stored message {index} is not JSON"
        ) from exc
    if not isinstance(value, dict):
        raise ConversationError(
            f"conversation {conv_id!r}: stored message {index} is not a message"
        )
    return value
