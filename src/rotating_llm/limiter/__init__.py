"""The limiter: Lua scripts (package data) and the client that calls them."""

from __future__ import annotations

from rotating_llm.limiter._limiter import KeyUsage, RedisLimiter, Refusal, Reservation

__all__ = ["KeyUsage", "RedisLimiter", "Refusal", "Reservation"]
