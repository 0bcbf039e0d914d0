"""Telling provider answers apart (DESIGN.md's failure table), from raw HTTP facts.

Faces that see a client library's exception extract status, body and headers and call
:func:`classify_http`; the answer says what happens to the key and to the request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rotating_llm.keys.lease import FailureKind

__all__ = ["Classified", "classify_http", "parse_retry_delay"]

_AUTH_REASONS = (
    "API_KEY_INVALID",
    "API_KEY_EXPIRED",
    "API_KEY_SERVICE_BLOCKED",
    "CONSUMER_SUSPENDED",
)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*s\s*$")


@dataclass(frozen=True)
class Classified:
    """A provider answer, classified.

    Attributes:
        kind: The failure kind (what happens to the key).
        retry_after: The provider's retry delay in seconds, if it gave one.
        retry_elsewhere: Whether the request should go to another key.
        reason: Short text for cooldowns, disables and errors (never a secret).
    """

    kind: FailureKind
    retry_after: float | None
    retry_elsewhere: bool
    reason: str


def parse_retry_delay(value: Any) -> float | None:
    """Seconds from ``"17s"``, ``"1.5s"``, ``17`` or a ``Retry-After`` header value."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) if value >= 0 else None
    text = str(value).strip()
    m = _DURATION.match(text)
    if m:
        return float(m.group(1))
    try:
        seconds = float(text)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _details(body: Any) -> tuple[str, str, list[dict[str, Any]]]:
    if isinstance(body, (bytes, str)):
        try:
            body = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return "", str(body)[:200] if isinstance(body, str) else "", []
    if not isinstance(body, dict):
        return "", "", []
    err = body.get("error", body)
    if not isinstance(err, dict):
        return "", str(err)[:200], []
    status = str(err.get("status") or err.get("code") or err.get("type") or "")
    message = str(err.get("message") or "")[:300]
    details = err.get("details") or []
    return status, message, [d for d in details if isinstance(d, dict)]


def classify_http(
    status: int, body: Any = None, headers: Mapping[str, str] | None = None
) -> Classified:
    """Classify a provider's error answer by status code, error body and headers.

    Gemini's invalid key comes as ``400 INVALID_ARGUMENT`` with an ``ErrorInfo`` reason
    ``API_KEY_INVALID``: it is an auth failure, recognised by its details, not its status.
    """
    err_status, message, details = _details(body)
    reasons = {str(d.get("reason", "")) for d in details}
    retry = None
    daily = False
    for d in details:
        kind = str(d.get("@type", ""))
        if kind.endswith("RetryInfo"):
            retry = parse_retry_delay(d.get("retryDelay"))
        if kind.endswith("QuotaFailure"):
            for v in d.get("violations") or []:
                if "perday" in str(v.get("quotaId", "")).lower().replace("_", ""):
                    daily = True
    if retry is None and headers:
        lowered = {k.lower(): v for k, v in headers.items()}
        retry = parse_retry_delay(lowered.get("retry-after"))
    short = f"{status} {err_status}".strip()
    if reasons & set(_AUTH_REASONS) or status in (401, 403) or "API key not valid" in message:
        why = next(iter(reasons & set(_AUTH_REASONS)), err_status or "auth")
        return Classified(FailureKind.AUTH, None, True, f"{status} {why}")
    if status == 429:
        if daily:
            return Classified(FailureKind.DAILY_QUOTA, retry, True, f"{short} per-day quota")
        return Classified(FailureKind.RATE_LIMIT, retry, True, f"{short} rate limited")
    if status in (408, 504):
        return Classified(FailureKind.TIMEOUT, retry, True, short)
    if status >= 500:
        return Classified(FailureKind.SERVER, retry, True, short)
    return Classified(FailureKind.INVALID_REQUEST, None, False, f"{short}: {message}".strip())
