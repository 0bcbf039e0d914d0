"""rotating-llm: many API keys for one LLM model as one pool that never trips a quota.

The core (this package) imports neither LangChain nor LiteLLM; the faces live in
``rotating_llm.langchain`` and ``rotating_llm.litellm``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rotating_llm._lazy import lazy_names as _lazy_names
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
    StoreTimeoutError,
    StoreUnavailableError,
)

if TYPE_CHECKING:
    from rotating_llm.config import Settings
    from rotating_llm.conversation import ConversationStore, get_conversation_store
    from rotating_llm.keys import (
        APIKey,
        FailureKind,
        KeyManager,
        Lease,
        QuotaGroup,
        get_key_manager,
        get_redis_limiter,
        load_keys_file,
    )
    from rotating_llm.limiter._limiter import RedisLimiter
    from rotating_llm.limiter._user_limits import (
        RateLimitDecision,
        UserRateLimiter,
        get_rate_limiter,
    )
    from rotating_llm.router import RequestRouter, get_request_router
    from rotating_llm.secrets import SecretStore, get_secret_store, test_secret_access
    from rotating_llm.tokens import count_actual_tokens, estimate_tokens

__version__ = "0.1.0"

# Everything but the errors loads on first use (PEP 562): `import rotating_llm` and
# `from rotating_llm import get_key_manager, APIKey` load neither redis-py nor a face;
# the manager, the store and redis-py load when the first manager is made.
_LAZY = {
    "APIKey": "rotating_llm.keys.models",
    "ConversationStore": "rotating_llm.conversation",
    "FailureKind": "rotating_llm.failures",
    "KeyManager": "rotating_llm.keys.manager",
    "Lease": "rotating_llm.keys.lease",
    "QuotaGroup": "rotating_llm.keys.models",
    "RateLimitDecision": "rotating_llm.limiter._user_limits",
    "RedisLimiter": "rotating_llm.limiter._limiter",
    "RequestRouter": "rotating_llm.router",
    "SecretStore": "rotating_llm.secrets",
    "Settings": "rotating_llm.config",
    "UserRateLimiter": "rotating_llm.limiter._user_limits",
    "count_actual_tokens": "rotating_llm.tokens",
    "estimate_tokens": "rotating_llm.tokens",
    "get_conversation_store": "rotating_llm.conversation",
    "get_key_manager": "rotating_llm.keys._default",
    "get_rate_limiter": "rotating_llm.limiter._user_limits",
    "get_redis_limiter": "rotating_llm.keys._default",
    "get_request_router": "rotating_llm.router",
    "get_secret_store": "rotating_llm.secrets",
    "load_keys_file": "rotating_llm.keys.loader",
    "test_secret_access": "rotating_llm.secrets",
}


__getattr__, __dir__ = _lazy_names(__name__, _LAZY, globals())


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
    "QuotaGroup",
    "RateLimitDecision",
    "RedisLimiter",
    "RequestRouter",
    "RequestTooLargeError",
    "RotatingLLMError",
    "SecretStore",
    "SecretStoreError",
    "Settings",
    "StoreError",
    "StoreTimeoutError",
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
