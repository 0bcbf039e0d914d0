"""The router's engine: the LangChain face's ``RotatingChatModel``, one per pool.

Imported by the router on first use only (``import rotating_llm`` stays free of
LangChain). The router passes two things per call as ``RotatingChatModel``'s own call
keywords: the completion tokens to reserve (``expected_completion_tokens``, without
capping the provider's output) and the capacity wait (``max_wait``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    message_to_dict,
    messages_from_dict,
)

from rotating_llm.keys import KeyManager
from rotating_llm.langchain import RotatingChatModel

__all__ = [
    "AFFINITY_KWARG",
    "COMPLETION_KWARG",
    "MAX_WAIT_KWARG",
    "build_messages",
    "build_model",
    "reply_parts",
    "turn_dicts",
]

logger = logging.getLogger("rotating_llm.router")

#: Call keyword of RotatingChatModel: completion tokens to add to the reservation.
COMPLETION_KWARG = "expected_completion_tokens"
#: Call keyword of RotatingChatModel: seconds to wait for capacity on this call.
MAX_WAIT_KWARG = "max_wait"
#: Call keyword of RotatingChatModel: the conversation whose last key is preferred.
AFFINITY_KWARG = "affinity"


def build_model(
    manager: KeyManager, model: str, *, rotation: bool, **options: Any
) -> RotatingChatModel:
    """The pool's chat model; without ``rotation`` it leases the first active key only."""
    llm = RotatingChatModel(
        model=model, key_manager=manager, first_key_only=not rotation, **options
    )
    if not rotation:
        active = [k.key_id for k in manager.keys if k.active and k.model_name == model]
        if len(active) > 1:
            logger.info(
                "LLM_MULTI_KEY_ROUTER_ENABLED is off: pool %s uses key %s only (%d keys)",
                model,
                active[0],
                len(active),
            )
    return llm


def build_messages(
    history: Sequence[Mapping[str, Any]], prompt: str, system_prompt: str | None
) -> list[BaseMessage]:
    """The call's messages: the system prompt (if given, replacing a stored one), the
    stored history, and the new prompt."""
    past = messages_from_dict([dict(m) for m in history])
    if system_prompt is not None:
        past = [m for m in past if not isinstance(m, SystemMessage)]
        return [SystemMessage(content=system_prompt), *past, HumanMessage(content=prompt)]
    return [*past, HumanMessage(content=prompt)]


def turn_dicts(prompt: str, reply: BaseMessage) -> list[dict[str, Any]]:
    """The turn to store: prompt and reply (the store adds the system prompt to a
    conversation that is still empty when the turn lands)."""
    return [message_to_dict(HumanMessage(content=prompt)), message_to_dict(reply)]


def reply_parts(reply: BaseMessage) -> tuple[str, dict[str, int] | None, str | None, int]:
    """``(text, usage, key_id, attempts)`` of the engine's answer."""
    text = str(reply.text)
    usage = None
    meta = getattr(reply, "usage_metadata", None) if isinstance(reply, AIMessage) else None
    if meta:
        usage = {
            "prompt": int(meta.get("input_tokens") or 0),
            "completion": int(meta.get("output_tokens") or 0),
            "total": int(meta.get("total_tokens") or 0),
        }
    info = reply.response_metadata
    key_id = info.get("key_id")
    attempts = int(info.get("attempts") or 1)
    return text, usage, str(key_id) if key_id else None, attempts
