"""rotating-llm: many API keys for one LLM model as one pool that never trips a quota.

The core (this package) imports neither LangChain nor LiteLLM; the faces live in
``rotating_llm.langchain`` and ``rotating_llm.litellm``.
"""

from __future__ import annotations

from typing import Any

from rotating_llm.config import Settings
from rotating_llm.errors import (
    AllKeysExhaustedError,
    CapacityError,
    ConfigError,
    ConversationError,
    KeyFileError,
    KeyNotFoundError,
    LeaseError,
    ProviderError,
    RequestTooLargeError,
    RotatingLLMError,
    SecretStoreError,
    StoreError,
    StoreUnavailableError,
)
from rotating_llm.keys import (
    APIKey,
    FailureKind,
    KeyManager,
    Lease,
    get_key_manager,
    get_redis_limiter,
    load_keys_file,
)
from rotating_llm.limiter._limiter import RedisLimiter
from rotating_llm.secrets import SecretStore, get_secret_store, test_secret_access

__version__ = "0.1.0"

# Faces and helpers loaded on first use, so `import rotating_llm` stays light.
_LAZY = {
    "ConversationStore": "rotating_llm.conversation",
    "RateLimitDecision": "rotating_llm.limiter._user_limits",
    "RequestRouter": "rotating_llm.router",
    "UserRateLimiter": "rotating_llm.limiter._user_limits",
    "count_actual_tokens": "rotating_llm.tokens",
    "estimate_tokens": "rotating_llm.tokens",
    "get_conversation_store": "rotating_llm.conversation",
    "get_rate_limiter": "rotating_llm.limiter._user_limits",
    "get_request_router": "rotating_llm.router",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rotating_llm' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "APIKey",
    "AllKeysExhaustedError",
    "CapacityError",
    "ConfigError",
    "ConversationError",
    "ConversationStore",
    "FailureKind",
    "KeyFileError",
    "KeyManager",
    "KeyNotFoundError",
    "Lease",
    "LeaseError",
    "ProviderError",
    "RateLimitDecision",
    "RedisLimiter",
    "RequestRouter",
    "RequestTooLargeError",
    "RotatingLLMError",
    "SecretStore",
    "SecretStoreError",
    "Settings",
    "StoreError",
    "StoreUnavailableError",
    "UserRateLimiter",
    "count_actual_tokens",
    "estimate_tokens",
    "get_conversation_store",
    "get_key_manager",
    "get_rate_limiter",
    "get_redis_limiter",
    "get_request_router",
    "get_secret_store",
    "load_keys_file",
    "test_secret_access",
]
