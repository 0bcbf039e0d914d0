"""The router's result dicts, and exceptions told apart as the original design's
``error_type`` values (without importing LangChain: the face's errors subclass the
core's, and carry the core's :class:`~rotating_llm.keys.FailureKind`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rotating_llm.conversation import ConversationError
from rotating_llm.errors import (
    AllKeysExhaustedError,
    ConfigError,
    RequestTooLargeError,
    SecretStoreError,
    StoreError,
)
from rotating_llm.keys import FailureKind
from rotating_llm.redaction import redact

__all__ = ["ERROR_TYPES", "Outcome", "error_type", "failure", "success"]

#: Every ``error_type`` a result can carry.
ERROR_TYPES = (
    "rate_limited",
    "auth",
    "invalid_request",
    "provider_error",
    "timeout",
    "secret_store",
    "store",
)

_BY_KIND = {
    FailureKind.RATE_LIMIT: "rate_limited",
    FailureKind.DAILY_QUOTA: "rate_limited",
    FailureKind.AUTH: "auth",
    FailureKind.INVALID_REQUEST: "invalid_request",
    FailureKind.SERVER: "provider_error",
    FailureKind.TIMEOUT: "timeout",
}


def error_type(exc: BaseException) -> str:
    """The ``error_type`` of ``exc`` (see :data:`ERROR_TYPES`)."""
    if isinstance(exc, AllKeysExhaustedError):
        return "rate_limited"
    if isinstance(exc, SecretStoreError):
        return "secret_store"
    if isinstance(exc, StoreError):
        return "store"
    if isinstance(exc, (RequestTooLargeError, ConversationError, ConfigError)):
        return "invalid_request"
    kind = getattr(exc, "kind", None)
    if isinstance(kind, FailureKind):
        return _BY_KIND[kind]
    if isinstance(exc, TimeoutError):
        return "timeout"
    return "provider_error"


@dataclass
class Outcome:
    """What one send did so far: the model asked, the model used, timing and attempts."""

    preferred: str
    model: str
    started: float = field(default_factory=time.monotonic)
    attempts: int = 0
    key_id: str | None = None

    def base(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model,
            "key_id": self.key_id,
            "attempts": self.attempts,
            "latency_ms": round((time.monotonic() - self.started) * 1000.0, 3),
        }
        if self.model != self.preferred:
            out["fallback_from"] = self.preferred
        return out


def success(outcome: Outcome, content: str, tokens: dict[str, int], **extra: Any) -> dict[str, Any]:
    """A successful result."""
    return {"success": True, "content": content, **outcome.base(), "tokens": tokens, **extra}


def failure(outcome: Outcome, exc: BaseException, **extra: Any) -> dict[str, Any]:
    """A failed result for ``exc``; the message is redacted (no secret ever)."""
    kind = error_type(exc)
    out: dict[str, Any] = {
        "success": False,
        "content": None,
        **outcome.base(),
        "tokens": {"prompt": 0, "completion": 0, "total": 0},
        "error": redact(f"{type(exc).__name__}: {exc}"),
        "error_type": kind,
        **extra,
    }
    if kind == "rate_limited":
        out["retry_after"] = getattr(exc, "retry_after", None)
    attempts = getattr(exc, "attempts", None)
    if isinstance(attempts, int) and attempts > outcome.attempts:
        out["attempts"] = attempts
    key_id = getattr(exc, "key_id", None)
    if isinstance(key_id, str) and key_id:
        out["key_id"] = key_id
    return out
