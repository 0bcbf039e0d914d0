"""Worker for the multi-process user-limit test (imported by spawned processes)."""

from __future__ import annotations

import time

from rotating_llm import Settings, UserRateLimiter


def hammer(
    redis_url: str, prefix: str, users: list[str], start_at: float
) -> list[tuple[str, bool]]:
    limiter = UserRateLimiter(
        Settings(
            redis_url=redis_url,
            key_prefix=prefix,
            window_seconds=30,
            user_rpm_default=3,
            global_rpm_max=10,
        )
    )
    while time.time() < start_at:
        time.sleep(0.001)
    out = [(u, limiter.check_rate_limit(u).allowed) for u in users * 4]
    limiter.close()
    return out
