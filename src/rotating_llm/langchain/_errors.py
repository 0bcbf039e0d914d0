"""Provider exceptions told apart (the failure table in docs/design.md), and the errors callers see.

Classification reads the error's details, not only its type: Gemini reports an invalid
key as ``400 INVALID_ARGUMENT`` with ``ErrorInfo`` reason ``API_KEY_INVALID``, which
langchain-google-genai raises as its invalid-request error.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from langchain_core.exceptions import (
    ContextOverflowError,
    ModelAPIError,
    ModelAuthenticationError,
    ModelInvalidRequestError,
    ModelRateLimitError,
    ModelTimeoutError,
)

from rotating_llm.errors import AllKeysExhaustedError, ProviderError
from rotating_llm.failures import Classified, FailureKind, classify_http, classify_transport

__all__ = [
    "Classified",
    "ProviderError",
    "RotatingAPIError",
    "RotatingAuthenticationError",
    "RotatingContextOverflowError",
    "RotatingInvalidRequestError",
    "RotatingRateLimitError",
    "RotatingTimeoutError",
    "classify",
    "exhausted",
]


class RotatingInvalidRequestError(ProviderError, ModelInvalidRequestError):
    """``400``: the request itself is wrong; not retried, no key blamed."""


class RotatingContextOverflowError(ProviderError, ContextOverflowError):
    """The input exceeds the model's context window; not retried."""


class RotatingAPIError(ProviderError, ModelAPIError):
    """The provider kept failing on its side (5xx, overloaded, connection lost)."""


class RotatingTimeoutError(ProviderError, ModelTimeoutError):
    """The provider kept timing out."""


class RotatingAuthenticationError(ProviderError, ModelAuthenticationError):
    """Keys kept being refused (401/403/``API_KEY_INVALID``) until attempts ran out."""


class RotatingRateLimitError(AllKeysExhaustedError, ModelRateLimitError):
    """No key of the pool has capacity: the core's ``AllKeysExhaustedError`` that is also
    LangChain's ``ModelRateLimitError``, so LangChain's retry and fallback tools see it."""


def exhausted(exc: AllKeysExhaustedError) -> RotatingRateLimitError:
    """The LangChain-flavoured copy of the core's ``exc`` (same message and fields)."""
    return RotatingRateLimitError(
        exc.model,
        exc.retry_after,
        exc.reasons,
        message=str(exc),
        queue_position=exc.queue_position,
        expected_wait=exc.expected_wait,
    )


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def _answer(err: BaseException) -> tuple[int, Any, Any] | None:
    """``(status, body, headers)`` of an SDK error carrying the provider's answer."""
    response = getattr(err, "response", None)
    headers = getattr(response, "headers", None)
    code = getattr(err, "code", None)
    details = getattr(err, "details", None)
    if isinstance(code, int) and not isinstance(code, bool) and isinstance(details, Mapping):
        return code, details, headers  # google-genai APIError
    status = getattr(err, "status_code", None)
    if isinstance(status, int) and not isinstance(status, bool):
        return status, getattr(err, "body", None), headers  # openai APIStatusError
    return None


def classify(exc: BaseException) -> Classified:
    """Tell what ``exc``, raised by a provider's LangChain model, means (the failure table).

    Finds the SDK error with the provider's answer in the cause chain and hands its
    status, body and headers to the core's :func:`~rotating_llm.failures.classify_http`;
    else transport errors and LangChain's error types decide. ``kind=None``: no provider
    failure.
    """
    chain = list(_chain(exc))
    for err in chain:
        answer = _answer(err)
        if answer is not None:
            return classify_http(*answer)
    for err in chain:
        found = classify_transport(cls.__name__ for cls in type(err).__mro__)
        if found is not None:
            return found
    for err in chain:
        name = type(err).__name__
        if isinstance(err, ModelAuthenticationError):
            return Classified(FailureKind.AUTH, None, name)
        if isinstance(err, ModelRateLimitError):
            return Classified(FailureKind.RATE_LIMIT, None, name)
        if isinstance(err, ModelTimeoutError):
            return Classified(FailureKind.TIMEOUT, None, name)
        if isinstance(err, ModelAPIError):
            return Classified(FailureKind.SERVER, None, name)
        if isinstance(err, (ContextOverflowError, ModelInvalidRequestError)):
            return Classified(FailureKind.INVALID_REQUEST, None, name)
    return Classified(None, None, type(exc).__name__)


_ERROR_TYPES: dict[FailureKind, type[ProviderError]] = {
    FailureKind.INVALID_REQUEST: RotatingInvalidRequestError,
    FailureKind.SERVER: RotatingAPIError,
    FailureKind.TIMEOUT: RotatingTimeoutError,
    FailureKind.AUTH: RotatingAuthenticationError,
}


def provider_error(
    exc: BaseException,
    found: Classified,
    *,
    model: str,
    key_id: str | None,
    attempts: int,
    secret: str | None = None,
) -> ProviderError:
    """The error to raise for ``exc`` (chain it with ``from exc``); the secret is redacted."""
    kind = found.kind or FailureKind.SERVER
    cls = _ERROR_TYPES.get(kind, RotatingAPIError)
    if kind is FailureKind.INVALID_REQUEST and any(
        isinstance(e, ContextOverflowError) for e in _chain(exc)
    ):
        cls = RotatingContextOverflowError
    detail = str(exc)
    if secret:
        detail = detail.replace(secret, "***")
    if len(detail) > 600:
        detail = detail[:600] + "..."
    message = (
        f"model {model!r}, key {key_id!r}, after {attempts} attempt(s): "
        f"{kind.value} ({found.reason or type(exc).__name__}): {type(exc).__name__}: {detail}"
    )
    return cls(
        message, model=model, key_id=key_id, kind=kind, status=found.status, attempts=attempts
    )
