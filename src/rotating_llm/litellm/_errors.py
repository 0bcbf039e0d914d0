"""The LiteLLM face's errors: LiteLLM's own types, so its retries and fallbacks handle them."""

from __future__ import annotations

import math

from litellm.exceptions import BadRequestError, RateLimitError, RateLimitErrorCategory

from rotating_llm.errors import AllKeysExhaustedError, RequestTooLargeError

__all__ = ["PoolExhaustedError", "PoolRequestTooLargeError"]


class PoolExhaustedError(RateLimitError):
    """No deployment of the model group has capacity within ``max_wait``.

    A ``litellm.RateLimitError`` (category ``litellm_rate_limit``), so LiteLLM's retries
    and fallbacks to other model groups apply. The core's
    :class:`~rotating_llm.errors.AllKeysExhaustedError` is its ``__cause__``.

    Attributes:
        pool: The model group.
        retry_after: Seconds until capacity returns (Redis's clock), ``None`` if never.
        reasons: Deployment (key) id -> why it could not serve.
    """

    def __init__(self, error: AllKeysExhaustedError) -> None:
        self.pool = error.model
        self.retry_after = error.retry_after
        self.reasons = dict(error.reasons)
        headers = (
            {"retry-after": str(max(1, math.ceil(error.retry_after)))}
            if error.retry_after is not None
            else None
        )
        super().__init__(
            str(error),
            llm_provider="rotating_llm",
            model=error.model,
            category=RateLimitErrorCategory.LITELLM_RATE_LIMIT,
            headers=headers,
        )


class PoolRequestTooLargeError(BadRequestError):
    """The request's estimated tokens exceed every deployment's TPM: it can never be served.

    Attributes:
        pool: The model group.
        estimated_tokens: The estimate.
        max_tpm: The largest TPM in the group.
    """

    def __init__(self, error: RequestTooLargeError) -> None:
        self.pool = error.model
        self.estimated_tokens = error.estimated_tokens
        self.max_tpm = error.max_tpm
        super().__init__(str(error), model=error.model, llm_provider="rotating_llm")
