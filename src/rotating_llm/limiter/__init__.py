"""The limiter: Lua scripts (package data) and the client that calls them."""

from __future__ import annotations

from rotating_llm.limiter._limiter import KeyUsage, RedisLimiter, Refusal, Reservation
from rotating_llm.limiter._user_limits import RateLimitDecision, UserRateLimiter, get_rate_limiter

__all__ = [
    "KeyUsage",
    "RateLimitDecision",
    "RedisLimiter",
    "Refusal",
    "Reservation",
    "UserRateLimiter",
    "get_rate_limiter",
]
