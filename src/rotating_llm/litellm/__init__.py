"""rotating-llm for LiteLLM: a ``Router``'s picks made by the shared, exact Redis limiter.

Keep your ``Router`` and its ``model_list`` (one deployment per API key), then::

    from rotating_llm.litellm import install
    install(router, redis_url="redis://...", max_wait=5)

Importing this package imports LiteLLM (slow); nothing else in rotating-llm does.
"""

from __future__ import annotations

from rotating_llm.failures import Classified
from rotating_llm.litellm._book import TOKEN_FIELD, LeaseBook
from rotating_llm.litellm._callback import LeaseSettler
from rotating_llm.litellm._errors import PoolExhaustedError, PoolRequestTooLargeError
from rotating_llm.litellm._failures import classify, retry_after_of, usage_tokens
from rotating_llm.litellm._filter import RotatingFilter
from rotating_llm.litellm._install import Installed, install, uninstall
from rotating_llm.litellm._keys import (
    PLACEHOLDER_SECRET,
    UNLIMITED,
    DeploymentSecretStore,
    deployment_key,
    estimate_tokens,
    key_id_for,
)
from rotating_llm.litellm._strategy import RotatingStrategy

__all__ = [
    "PLACEHOLDER_SECRET",
    "TOKEN_FIELD",
    "UNLIMITED",
    "Classified",
    "DeploymentSecretStore",
    "Installed",
    "LeaseBook",
    "LeaseSettler",
    "PoolExhaustedError",
    "PoolRequestTooLargeError",
    "RotatingFilter",
    "RotatingStrategy",
    "classify",
    "deployment_key",
    "estimate_tokens",
    "install",
    "key_id_for",
    "retry_after_of",
    "uninstall",
    "usage_tokens",
]
