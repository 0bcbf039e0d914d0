"""LangChain face: ``RotatingChatModel`` and ``RedisChatMessageHistory``.

Needs the ``langchain`` extra. This package imports LangChain; the core never does.
"""

from __future__ import annotations

from rotating_llm.langchain._chat_model import RotatingChatModel
from rotating_llm.langchain._errors import (
    Classified,
    ProviderError,
    RotatingAPIError,
    RotatingAuthenticationError,
    RotatingContextOverflowError,
    RotatingInvalidRequestError,
    RotatingRateLimitError,
    RotatingTimeoutError,
    classify,
)
from rotating_llm.langchain._history import RedisChatMessageHistory
from rotating_llm.langchain._providers import (
    ProviderFactory,
    ProviderSpec,
    gemini_model,
    openai_model,
)

__all__ = [
    "Classified",
    "ProviderError",
    "ProviderFactory",
    "ProviderSpec",
    "RedisChatMessageHistory",
    "RotatingAPIError",
    "RotatingAuthenticationError",
    "RotatingChatModel",
    "RotatingContextOverflowError",
    "RotatingInvalidRequestError",
    "RotatingRateLimitError",
    "RotatingTimeoutError",
    "classify",
    "gemini_model",
    "openai_model",
]
