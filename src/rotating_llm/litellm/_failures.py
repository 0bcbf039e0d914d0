"""What a LiteLLM exception means for the key, as DESIGN.md's failure table tells them apart."""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from rotating_llm.failures import classify_http
from rotating_llm.keys.lease import FailureKind

__all__ = ["Failure", "classify", "retry_after_of", "usage_tokens"]

_DAILY = re.compile(r"per ?day|PerDay|\bRPD\b|insufficient_quota|daily", re.IGNORECASE)
_AUTH_TEXT = re.compile(
    r"API_KEY_INVALID|API key not valid|invalid[_ ]api[_ ]key|Incorrect API key|"
    r"PERMISSION_DENIED|suspended",
    re.IGNORECASE,
)
_RETRY_DELAY = re.compile(r"retryDelay[\"']?\s*[:=]\s*[\"']?(\d+(?:\.\d+)?)s")
_TRY_AGAIN = re.compile(r"try again in (\d+(?:\.\d+)?)\s*(ms|s)\b", re.IGNORECASE)
_REASON_MAX = 120
_TIMEOUTS = ("Timeout", "APITimeoutError", "TimeoutError", "TimeoutException")


@dataclass(frozen=True)
class Failure:
    """One failed attempt, classified.

    Attributes:
        kind: The failure table's row.
        retry_after: The provider's delay in seconds, if it gave one.
        reason: Short text for the key's status (exception type and status code only).
    """

    kind: FailureKind
    retry_after: float | None
    reason: str


def _status(exc: BaseException) -> int | None:
    for attr in ("status_code", "code"):
        value = getattr(exc, attr, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.isdigit():
            return int(value)
    response = getattr(exc, "response", None)
    value = getattr(response, "status_code", None)
    return value if isinstance(value, int) else None


def _headers(exc: BaseException) -> Mapping[str, Any]:
    merged: dict[str, Any] = {}
    for source in (
        getattr(getattr(exc, "response", None), "headers", None),
        getattr(exc, "litellm_response_headers", None),
        getattr(exc, "headers", None),
    ):
        if source is None:
            continue
        try:
            items = list(source.items())
        except (AttributeError, TypeError):
            continue
        for name, value in items:
            merged[str(name).lower()] = value
    return merged


def retry_after_of(exc: BaseException, now: float | None = None) -> float | None:
    """The provider's retry delay: ``retry-after-ms``, ``Retry-After``, or RetryInfo in the body."""
    headers = _headers(exc)
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            ms = float(raw_ms)
        except (TypeError, ValueError):
            ms = math.nan
        if math.isfinite(ms) and ms > 0:
            return ms / 1000.0
    raw = headers.get("retry-after")
    if raw is not None:
        text = str(raw).strip()
        try:
            seconds = float(text)
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(text) if text else None
            seconds = (
                parsed.timestamp() - (time.time() if now is None else now) if parsed else math.nan
            )
        if math.isfinite(seconds) and seconds > 0:
            return seconds
    message = str(exc)
    found = _RETRY_DELAY.search(message)
    if found:
        return float(found.group(1)) or None
    found = _TRY_AGAIN.search(message)
    if found:
        value = float(found.group(1))
        return (value / 1000.0 if found.group(2).lower() == "ms" else value) or None
    return None


def _named(exc: BaseException, *names: str) -> bool:
    return any(cls.__name__ in names for cls in type(exc).__mro__)


def _body(exc: BaseException) -> Any:
    body = getattr(exc, "body", None)
    if body:
        return body
    text = getattr(getattr(exc, "response", None), "text", None)
    return text if isinstance(text, str) and text else str(exc)


def classify(exc: BaseException) -> Failure:
    """Classify a LiteLLM (or OpenAI SDK, httpx) exception into the failure table.

    The status, body and headers go through the core's
    :func:`rotating_llm.failures.classify_http`; LiteLLM's flattened messages add what
    the body no longer shows (per-day quotas, Gemini's invalid-key text, ``retry-after-ms``).
    """
    status = _status(exc)
    name = type(exc).__name__
    if status is None:
        kind = FailureKind.TIMEOUT if _named(exc, *_TIMEOUTS) else FailureKind.SERVER
        return Failure(kind, None, name[:_REASON_MAX])
    message = str(exc)
    headers = {k: str(v) for k, v in _headers(exc).items()}
    answer = classify_http(status, _body(exc), headers)
    kind = answer.kind
    if kind is FailureKind.RATE_LIMIT and _DAILY.search(message):
        kind = FailureKind.DAILY_QUOTA
    elif kind is FailureKind.INVALID_REQUEST and _AUTH_TEXT.search(message):
        kind = FailureKind.AUTH
    elif kind is FailureKind.INVALID_REQUEST and _named(exc, *_TIMEOUTS):
        kind = FailureKind.TIMEOUT
    retry = (
        retry_after_of(exc) if kind in (FailureKind.RATE_LIMIT, FailureKind.DAILY_QUOTA) else None
    )
    if retry is None:
        retry = answer.retry_after
    reason = (
        f"{name} ({status})" if kind is FailureKind.INVALID_REQUEST else f"{name}: {answer.reason}"
    )
    return Failure(kind, retry, reason[:_REASON_MAX])


def _get(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def usage_tokens(response: Any, counts: Literal["total", "input"] = "total") -> int | None:
    """Tokens a response reports (``usage.total_tokens``, or ``prompt_tokens`` for ``input``)."""
    usage = _get(response, "usage")
    if usage is None:
        return None
    prompt = _get(usage, "prompt_tokens")
    completion = _get(usage, "completion_tokens")
    total = _get(usage, "total_tokens")
    if counts == "input":
        return int(prompt) if isinstance(prompt, int) and prompt >= 0 else None
    if isinstance(total, int) and total >= 0:
        return total
    if isinstance(prompt, int) and isinstance(completion, int):
        return prompt + completion
    return None
