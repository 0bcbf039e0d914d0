"""Provider exceptions told apart (DESIGN.md's failure table), and the errors callers see.

Classification reads the error's details, not only its type: Gemini reports an invalid
key as ``400 INVALID_ARGUMENT`` with ``ErrorInfo`` reason ``API_KEY_INVALID``, which
langchain-google-genai raises as its invalid-request error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
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
from rotating_llm.keys import FailureKind

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

_AUTH_REASONS = {"API_KEY_INVALID", "API_KEY_EXPIRED", "CONSUMER_SUSPENDED", "SERVICE_DISABLED"}
_AUTH_CODES = {"invalid_api_key", "account_deactivated", "invalid_organization"}
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)s\s*$")
_TIMEOUT_NAMES = ("Timeout", "TimedOut", "DeadlineExceeded")
_TRANSPORT_NAMES = (
    "ConnectError",
    "ConnectionError",
    "RemoteProtocolError",
    "ReadError",
    "WriteError",
    "ProtocolError",
    "ServerDisconnected",
    "ConnectionReset",
    "ClientPayloadError",
    "ClientOSError",
    "TransportError",
)


@dataclass(frozen=True)
class Classified:
    """What a provider exception means for the key and the request.

    Attributes:
        kind: The failure table's row; ``None`` when the exception is not a provider failure.
        retry_after: The provider's own delay in seconds, if it gave one.
        reason: Short text for the key's cooldown/disable record (no secret).
        status: The HTTP status, when there was one.
    """

    kind: FailureKind | None
    retry_after: float | None = None
    reason: str = ""
    status: int | None = None


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
    return RotatingRateLimitError(exc.model, exc.retry_after, exc.reasons, message=str(exc))


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def _duration(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        found = _DURATION.match(value)
        if found:
            return float(found.group(1))
    if isinstance(value, Mapping):  # {"seconds": 17, "nanos": 0}
        secs = value.get("seconds", 0)
        nanos = value.get("nanos", 0)
        if isinstance(secs, (int, float, str)) and isinstance(nanos, (int, float)):
            try:
                return float(secs) + float(nanos) / 1e9
            except ValueError:
                return None
    return None


def _google_body(err: BaseException) -> Mapping[str, Any] | None:
    details = getattr(err, "details", None)
    if isinstance(details, Mapping):
        inner = details.get("error", details)
        return inner if isinstance(inner, Mapping) else None
    return None


def _classify_google(code: int, body: Mapping[str, Any]) -> Classified:
    status = str(body.get("status") or "")
    message = str(body.get("message") or "")
    reasons: set[str] = set()
    quota_ids: list[str] = []
    retry: float | None = None
    for item in body.get("details") or []:
        if not isinstance(item, Mapping):
            continue
        kind = str(item.get("@type", ""))
        if kind.endswith("ErrorInfo"):
            reasons.add(str(item.get("reason", "")))
        elif kind.endswith("QuotaFailure"):
            for v in item.get("violations") or []:
                if isinstance(v, Mapping):
                    quota_ids.append(str(v.get("quotaId") or v.get("quotaMetric") or ""))
        elif kind.endswith("RetryInfo"):
            retry = _duration(item.get("retryDelay"))
    label = f"{code} {status}".strip()
    if reasons & _AUTH_REASONS or "API key not valid" in message:
        found = sorted(reasons & _AUTH_REASONS) or ["API_KEY_INVALID"]
        return Classified(FailureKind.AUTH, None, f"{label} {found[0]}", code)
    if code == 429:
        if any("perday" in q.lower() for q in quota_ids):
            return Classified(FailureKind.DAILY_QUOTA, retry, f"{label} per-day quota", code)
        return Classified(FailureKind.RATE_LIMIT, retry, f"{label} rate limited", code)
    return _by_status(code, label)


def _by_status(code: int, label: str) -> Classified:
    if code in (401, 403):
        return Classified(FailureKind.AUTH, None, label, code)
    if code == 429:
        return Classified(FailureKind.RATE_LIMIT, None, label, code)
    if code in (408, 504):
        return Classified(FailureKind.TIMEOUT, None, label, code)
    if code >= 500:
        return Classified(FailureKind.SERVER, None, label, code)
    return Classified(FailureKind.INVALID_REQUEST, None, label, code)


def _headers_retry(response: object) -> float | None:
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            return float(raw) / scale
        except ValueError:
            continue
    return None


def _classify_openai(err: BaseException, code: int) -> Classified:
    body = getattr(err, "body", None)
    info = body.get("error", body) if isinstance(body, Mapping) else None
    err_code = str(info.get("code") or "") if isinstance(info, Mapping) else ""
    message = str(info.get("message") or "") if isinstance(info, Mapping) else ""
    label = f"{code} {err_code}".strip()
    retry = _headers_retry(getattr(err, "response", None))
    if err_code in _AUTH_CODES:
        return Classified(FailureKind.AUTH, None, label, code)
    if code == 429:
        if err_code == "insufficient_quota" or "per day" in message.lower():
            return Classified(FailureKind.DAILY_QUOTA, retry, f"{label} per-day quota", code)
        return Classified(FailureKind.RATE_LIMIT, retry, f"{label} rate limited", code)
    return _by_status(code, label)


def _names(exc: BaseException) -> list[str]:
    return [cls.__name__ for cls in type(exc).__mro__]


def classify(exc: BaseException) -> Classified:
    """Tell what ``exc``, raised by a provider's LangChain model, means (the failure table).

    Looks through the exception's cause chain for the SDK error with the provider's
    answer (status, body, headers) before falling back to LangChain's error types and
    transport errors. Returns ``kind=None`` for exceptions that are no provider failure.
    """
    for err in _chain(exc):
        body = _google_body(err)
        code = getattr(err, "code", None)
        if body is not None and isinstance(code, int):
            return _classify_google(code, body)
        status = getattr(err, "status_code", None)
        if isinstance(status, int) and hasattr(err, "response"):
            return _classify_openai(err, status)
    for err in _chain(exc):
        names = _names(err)
        if isinstance(err, ModelAuthenticationError) or "PermissionDeniedError" in names:
            return Classified(FailureKind.AUTH, None, type(err).__name__)
        if isinstance(err, ModelRateLimitError):
            return Classified(FailureKind.RATE_LIMIT, None, type(err).__name__)
        if isinstance(err, (ModelTimeoutError, TimeoutError)) or any(
            t in n for n in names for t in _TIMEOUT_NAMES
        ):
            return Classified(FailureKind.TIMEOUT, None, type(err).__name__)
        if isinstance(err, ModelAPIError) or any(t in n for n in names for t in _TRANSPORT_NAMES):
            return Classified(FailureKind.SERVER, None, type(err).__name__)
        if isinstance(err, (ConnectionError, json.JSONDecodeError)):
            return Classified(FailureKind.SERVER, None, type(err).__name__)
        if isinstance(err, (ContextOverflowError, ModelInvalidRequestError)):
            return Classified(FailureKind.INVALID_REQUEST, None, type(err).__name__)
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
