"""Settings of the provider simulator: limits, key fingerprints and token counting."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "CHARS_PER_TOKEN",
    "IMAGE_TOKENS",
    "LIMIT_NAMES",
    "Limits",
    "TpmCounts",
    "count_tokens",
    "fingerprint",
    "validate_limit",
    "validate_positive",
]

#: One token per this many characters (rounded up), the documented estimate.
CHARS_PER_TOKEN = 4
#: Tokens charged for each non-text part (image, audio, file), like Gemini's image cost.
IMAGE_TOKENS = 258

TpmCounts = Literal["input", "total"]
#: The limit names every limit set uses, in the order they are checked within a window.
LIMIT_NAMES = ("rpm", "tpm", "rpd", "tpd")


def validate_limit(name: str, value: object) -> int | None:
    """Return a limit value, or raise ``ValueError`` naming the argument.

    Args:
        name: The argument's name, used in the error message.
        value: ``None`` (no limit) or a positive integer.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
    return value


def validate_positive(name: str, value: object) -> float:
    """Return a positive finite number, or raise ``ValueError`` naming the argument."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Limits:
    """Per-key quotas; ``None`` means unlimited.

    Attributes:
        rpm: Requests per sliding window (``window`` seconds, 60 by default).
        tpm: Tokens per sliding window.
        rpd: Requests per sliding day window (``day_window`` seconds, 86,400 by default).
        tpd: Tokens per day window.
    """

    rpm: int | None = None
    tpm: int | None = None
    rpd: int | None = None
    tpd: int | None = None

    def __post_init__(self) -> None:
        for name in LIMIT_NAMES:
            validate_limit(name, getattr(self, name))

    def to_dict(self) -> dict[str, int | None]:
        """Return the limits as a JSON-friendly dict."""
        return {name: getattr(self, name) for name in LIMIT_NAMES}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, what: str = "limits") -> Limits:
        """Build limits from a dict of ``rpm``/``tpm``/``rpd``/``tpd`` (others refused).

        Raises:
            ValueError: An unknown name or a bad value (the message names ``what``).
        """
        data = dict(data or {})
        unknown = sorted(set(data) - set(LIMIT_NAMES))
        if unknown:
            raise ValueError(f"{what}: unknown limit {unknown[0]!r} (use {', '.join(LIMIT_NAMES)})")
        for name, value in data.items():
            validate_limit(f"{what}.{name}", value)
        return cls(**data)

    def is_empty(self) -> bool:
        """Whether no limit is set."""
        return all(getattr(self, name) is None for name in LIMIT_NAMES)


def fingerprint(key: str) -> str:
    """Return a short, safe name for an API key (never the key itself).

    Four leading characters (for keys of 16 characters or more) and eight hex
    digits of the key's SHA-256, e.g. ``AIza…3f9c01ab``.
    """
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:8]
    prefix = key[:4] if len(key) >= 16 else ""
    return f"{prefix}…{digest}"


def count_tokens(text: str) -> int:
    """Count tokens deterministically: ``ceil(len(text) / 4)`` characters, 0 for ''."""
    return -(-len(text) // CHARS_PER_TOKEN)


def count_json_tokens(value: Any) -> int:
    """Count the tokens of a JSON value by its compact serialisation."""
    return count_tokens(json.dumps(value, separators=(",", ":"), ensure_ascii=False))
