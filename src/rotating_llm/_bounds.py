"""Bounds of every number that reaches the limiter, checked once at the library's edge.

Limits and token counts are integers (never ``bool``, ``float`` or ``str``) of at most
:data:`MAX_LIMIT`, so the Lua scripts' counters can never overflow; delays are finite
numbers, capped by the caller (at the next daily reset plus a margin), and a delay that
is not finite is treated as absent.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "DELAY_MARGIN_S",
    "MAX_LIMIT",
    "MAX_POOL_TIERS",
    "MAX_PRIORITY",
    "MAX_TENANT_LEN",
    "MAX_TICKET_SECONDS",
    "MAX_TIER",
    "MAX_TOKENS",
    "MAX_WEIGHT",
    "check_count",
    "check_delay",
    "check_priority",
    "check_tenant",
    "lease_failure",
    "lease_tokens",
]

#: The largest limit (rpm, tpm, rpd) a key may have.
MAX_LIMIT = 10**12
#: The highest tier of a key (tier 0 is served first; no pool needs more levels).
MAX_TIER = 1000
#: The most distinct tiers the keys of one pool may have (a refusal looks at each).
MAX_POOL_TIERS = 8
#: The largest weight of a key (relative shares: no pool needs more).
MAX_WEIGHT = 1e6
#: The largest token count of one request (estimated or reported).
MAX_TOKENS = 10**12
#: Priorities of an acquire are integers from -MAX_PRIORITY to MAX_PRIORITY (higher first).
MAX_PRIORITY = 1000
#: The longest tenant name (a tenant: whose request it is, for fair shares).
MAX_TENANT_LEN = 256
#: The longest a waiter's queue ticket lives without being renewed (seconds); the
#: queue's keys outlive their last change by twice this.
MAX_TICKET_SECONDS = 600
#: A cooldown may last until the next daily reset plus this (seconds).
DELAY_MARGIN_S = 3600.0


def check_count(value: Any, what: str, error: type[Exception], high: int = MAX_TOKENS) -> int:
    """``value`` as an int in ``[0, high]``, or ``error`` naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{what} must be an integer, got {type(value).__name__} {value!r:.40}")
    if not 0 <= value <= high:
        raise error(f"{what} must be from 0 to {high}, got {value}")
    return value


def check_delay(value: Any, what: str, error: type[Exception]) -> float | None:
    """``value`` as a delay in seconds: ``None`` if absent, not finite or not positive.

    Anything that is not a number (``bool``, ``str``, ...) is ``error`` naming ``what``.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise error(f"{what} must be a number of seconds, got {type(value).__name__}")
    try:
        seconds = float(value)
    except OverflowError:  # an int beyond any float: far beyond every cap
        return math.inf
    if math.isnan(seconds) or math.isinf(seconds) or seconds <= 0:
        return None
    return seconds


def check_priority(value: Any, error: type[Exception]) -> int:
    """``value`` as a priority: an int in ``[-MAX_PRIORITY, MAX_PRIORITY]``, or ``error``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"priority must be an integer, got {type(value).__name__} {value!r:.40}")
    if not -MAX_PRIORITY <= value <= MAX_PRIORITY:
        raise error(f"priority must be from {-MAX_PRIORITY} to {MAX_PRIORITY}, got {value}")
    return value


def check_tenant(value: Any, error: type[Exception]) -> str | None:
    """``value`` as a tenant: ``None`` or a non-empty string of at most MAX_TENANT_LEN."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise error(f"tenant must be a string, got {type(value).__name__}")
    if not value or len(value) > MAX_TENANT_LEN:
        raise error(f"tenant must be 1 to {MAX_TENANT_LEN} characters, got {len(value)}")
    return value


def lease_tokens(actual_tokens: Any, default: int) -> int:
    """The tokens a lease settles with: ``default`` if ``actual_tokens`` is None."""
    from rotating_llm.errors import LeaseError

    if actual_tokens is None:
        return default
    return check_count(actual_tokens, "actual_tokens", LeaseError)


def lease_failure(retry_after: Any, actual_tokens: Any) -> tuple[float | None, int | None]:
    """``(retry_after, actual_tokens)`` of ``Lease.fail``, checked (``LeaseError``)."""
    from rotating_llm.errors import LeaseError

    delay = check_delay(retry_after, "retry_after", LeaseError)
    if actual_tokens is not None:
        actual_tokens = check_count(actual_tokens, "actual_tokens", LeaseError)
    return delay, actual_tokens
