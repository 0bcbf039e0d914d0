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

    A pick that waited in the pool's queue and gave up says where it stood: the message
    (the proxy's error body) names how many were ahead and the expected wait, the
    ``x-rotating-llm-queue-position`` and ``x-rotating-llm-expected-wait`` headers carry
    them, and ``Retry-After`` is the later of ``retry_after`` and ``expected_wait``
    (whole seconds, at least 1): a client that comes back sooner is only refused again.

    Attributes:
        pool: The model group.
        retry_after: Seconds until capacity returns (Redis's clock), ``None`` if never.
        reasons: Deployment (key) id -> why it could not serve.
        queue_position: Waiters ahead of the pick in the pool's queue when it gave up
            (``None``: it was not queued).
        expected_wait: The expected wait in the queue then, in seconds (``None``: unknown).
    """

    def __init__(self, error: AllKeysExhaustedError) -> None:
        self.pool = error.model
        self.retry_after = error.retry_after
        self.reasons = dict(error.reasons)
        self.queue_position = error.queue_position
        self.expected_wait = error.expected_wait
        super().__init__(
            str(error),
            llm_provider="rotating_llm",
            model=error.model,
            category=RateLimitErrorCategory.LITELLM_RATE_LIMIT,
            headers=_headers(error) or None,
        )


def _headers(error: AllKeysExhaustedError) -> dict[str, str]:
    """The refusal's response headers: ``retry-after`` and the queue's, when known."""
    out: dict[str, str] = {}
    wait = error.retry_after
    if error.queue_position is not None:
        out["x-rotating-llm-queue-position"] = str(error.queue_position)
        if error.expected_wait is not None:
            out["x-rotating-llm-expected-wait"] = f"{error.expected_wait:.3f}"
            wait = max(wait or 0.0, error.expected_wait) if wait is not None else None
    if wait is not None:
        out["retry-after"] = str(max(1, math.ceil(wait)))
    return out


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
