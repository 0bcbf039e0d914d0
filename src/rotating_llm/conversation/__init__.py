"""Conversations that survive key rotation: Redis lists of LangChain-form messages.

The core writes LangChain's ``message_to_dict`` format itself and imports no framework.
"""

from __future__ import annotations

from rotating_llm.conversation._messages import (
    MESSAGE_TYPES,
    ConversationError,
    make_message,
    normalize_message,
)
from rotating_llm.conversation._store import ConversationStore, get_conversation_store

__all__ = [
    "MESSAGE_TYPES",
    "ConversationError",
    "ConversationStore",
    "get_conversation_store",
    "make_message",
    "normalize_message",
]
