"""Telling provider answers apart (the failure table in docs/design.md): the one classifier.

Every face extracts the provider's answer (HTTP status, error body, headers) from its
framework's exception and calls :func:`classify_http`; exceptions with no answer (a
timeout, a reset connection) go to :func:`classify_transport`. The rules live here only.
"""

from __future__ import annotations

import email.utils
import enum
import json
import math
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from rotating_llm.learning import NO_FACTS, ProviderFacts, parse_answer

__all__ = [
    "Classified",
    "FailureKind",
    "classify_http",
    "classify_transport",
    "parse_retry_delay",
]


class FailureKind(str, enum.Enum):
    """What the provider answered, as the failure table in docs/design.md tells them apart."""

    #: 429 per-minute quota: cooldown for the provider's delay, else growing backoff.
    RATE_LIMIT = "rate_limit"
    #: 429 per-day quota: cooldown until the next daily reset.
    DAILY_QUOTA = "daily_quota"
    #: 401/403, API_KEY_INVALID, suspended, blocked: disabled (after one fresh read).
    AUTH = "auth"
    #: 5xx, overloaded, connection reset: model-side, the key is not blamed.
    SERVER = "server"
    #: The call timed out: the key is not blamed.
    TIMEOUT = "timeout"
    #: 400 invalid request, context too long: the key is not blamed.
    INVALID_REQUEST = "invalid_request"


#: Gemini ``ErrorInfo`` reasons that refuse the key itself.
_AUTH_REASONS = frozenset(
    {
        "API_KEY_INVALID",
        "API_KEY_EXPIRED",
        "API_KEY_SERVICE_BLOCKED",
        "CONSUMER_SUSPENDED",
        "SERVICE_DISABLED",
    }
)
#: Error statuses (Gemini) and codes (OpenAI) that refuse the key.
_AUTH_STATUSES = frozenset({"PERMISSION_DENIED", "UNAUTHENTICATED"})
_AUTH_CODES = frozenset({"invalid_api_key", "account_deactivated", "invalid_organization"})
_AUTH_TEXT = re.compile(r"API key not valid|Incorrect API key|suspended", re.IGNORECASE)
_DAILY_TEXT = re.compile(r"per ?day|\bRPD\b|daily", re.IGNORECASE)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*s?\s*$")
_TRY_AGAIN = re.compile(r"try again in (\d+(?:\.\d+)?)\s*(ms|s)\b", re.IGNORECASE)
_REASON_MAX = 160
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
    "JSONDecodeError",
)


@dataclass(frozen=True)
class Classified:
    """A provider answer, classified.

    Attributes:
        kind: The failure table's row (what happens to the key); ``None`` when the
            exception is no provider failure at all.
        retry_after: The provider's retry delay in seconds, if it gave one.
        reason: Short text for cooldowns, disables and errors (never a secret).
        status: The HTTP status, when there was an answer.
        facts: What the answer says about the key's limits (``rotating_llm.learning``),
            for ``Lease.fail(..., facts=...)``.
    """

    kind: FailureKind | None
    retry_after: float | None = None
    reason: str = ""
    status: int | None = None
    facts: ProviderFacts = NO_FACTS

    @property
    def retry_elsewhere(self) -> bool:
        """Whether the request should go to another key (all but invalid requests)."""
        return self.kind is not None and self.kind is not FailureKind.INVALID_REQUEST


def parse_retry_delay(value: Any, now: float | None = None) -> float | None:
    """Seconds from ``"17s"``, ``"1.5s"``, ``17``, ``{"seconds": 17}`` or an HTTP date."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, Mapping):  # protobuf Duration as JSON
        try:
            seconds = float(value.get("seconds", 0)) + float(value.get("nanos", 0)) / 1e9
        except (TypeError, ValueError):
            return None
    else:
        text = str(value).strip()
        found = _DURATION.match(text)
        if found:
            seconds = float(found.group(1))
        else:
            try:
                parsed = email.utils.parsedate_to_datetime(text)
            except (TypeError, ValueError):
                return None
            seconds = parsed.timestamp() - (time.time() if now is None else now)
    return seconds if math.isfinite(seconds) and seconds > 0 else None


def _as_json(body: Any) -> Any:
    """The body as data: bytes/str are parsed (also JSON embedded after a prefix)."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str):
        return body
    try:
        return json.loads(body)
    except ValueError:
        start = body.find("{")
        if start < 0:
            return body
        try:
            return json.JSONDecoder().raw_decode(body[start:])[0]
        except ValueError:
            return body


def _fields(body: Any) -> tuple[str, str, str, list[Mapping[str, Any]]]:
    """``(status, code, message, details)`` of an error body (Gemini or OpenAI form)."""
    data = _as_json(body)
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    if isinstance(data, str):
        return "", "", data[:300], []
    if not isinstance(data, Mapping):
        return "", "", "", []
    err = data.get("error", data)
    if not isinstance(err, Mapping):
        return "", "", str(err)[:300], []
    status = str(err.get("status") or "")
    code = err.get("code")
    code_text = code if isinstance(code, str) else str(err.get("type") or "")
    message = str(err.get("message") or "")[:300]
    details = err.get("details") or []
    if not isinstance(details, list):
        details = []
    return status, code_text, message, [d for d in details if isinstance(d, Mapping)]


def _header_retry(headers: Mapping[str, Any] | None) -> float | None:
    if not headers:
        return None
    lowered = {str(k).lower(): v for k, v in headers.items()}
    ms = parse_retry_delay(lowered.get("retry-after-ms"))
    if ms is not None:
        return ms / 1000.0
    return parse_retry_delay(lowered.get("retry-after"))


def _clip(text: str) -> str:
    return text[:_REASON_MAX]


def classify_http(
    status: int, body: Any = None, headers: Mapping[str, Any] | None = None
) -> Classified:
    """Classify a provider's error answer by status code, error body and headers.

    Gemini's invalid or blocked key comes as ``400 INVALID_ARGUMENT`` or
    ``400 PERMISSION_DENIED`` with an ``ErrorInfo`` reason (``API_KEY_INVALID``,
    ``API_KEY_SERVICE_BLOCKED``): a refused key, recognised by its details, not its status.
    The limits the answer states are in the result's ``facts``.
    """
    found = _classify(status, body, headers)
    facts = parse_answer(status, body, headers)
    return replace(found, facts=facts) if facts else found


def _classify(status: int, body: Any, headers: Mapping[str, Any] | None) -> Classified:
    err_status, code, message, details = _fields(body)
    reasons: set[str] = set()
    quota_ids: list[str] = []
    retry: float | None = None
    for item in details:
        kind = str(item.get("@type", ""))
        if kind.endswith("ErrorInfo"):
            reasons.add(str(item.get("reason", "")))
        elif kind.endswith("QuotaFailure"):
            for v in item.get("violations") or []:
                if isinstance(v, Mapping):
                    quota_ids.append(str(v.get("quotaId") or v.get("quotaMetric") or ""))
        elif kind.endswith("RetryInfo") or "retryDelay" in item:
            retry = parse_retry_delay(item.get("retryDelay"))
    if retry is None:
        retry = _header_retry(headers)
    if retry is None and (hint := _TRY_AGAIN.search(message)):
        value = float(hint.group(1))
        retry = value / 1000.0 if hint.group(2).lower() == "ms" else value
    label = f"{status} {err_status or code}".strip()
    refused = sorted(reasons & _AUTH_REASONS)
    if (
        refused
        or status in (401, 403)
        or err_status in _AUTH_STATUSES
        or code in _AUTH_CODES
        or _AUTH_TEXT.search(message)
    ):
        why = refused[0] if refused else ""
        return Classified(FailureKind.AUTH, None, _clip(f"{label} {why}".strip()), status)
    if status == 429:
        daily = any("perday" in q.lower().replace("_", "") for q in quota_ids)
        if daily or code == "insufficient_quota" or _DAILY_TEXT.search(message):
            return Classified(FailureKind.DAILY_QUOTA, retry, f"{label} per-day quota", status)
        return Classified(FailureKind.RATE_LIMIT, retry, f"{label} rate limited", status)
    if status in (408, 504):
        return Classified(FailureKind.TIMEOUT, None, label, status)
    if status >= 500:
        return Classified(FailureKind.SERVER, None, label, status)
    return Classified(FailureKind.INVALID_REQUEST, None, _clip(f"{label}: {message}"), status)


def classify_transport(type_names: Iterable[str]) -> Classified | None:
    """Classify an exception without a provider answer by its type names (its MRO).

    Returns ``TIMEOUT`` for timeouts, ``SERVER`` for lost connections and unreadable
    answers, ``None`` when the names say neither.
    """
    names = list(type_names)
    if any(t in n for n in names for t in _TIMEOUT_NAMES):
        return Classified(FailureKind.TIMEOUT, None, "timeout")
    if any(t in n for n in names for t in _TRANSPORT_NAMES):
        return Classified(FailureKind.SERVER, None, "connection lost")
    return None
