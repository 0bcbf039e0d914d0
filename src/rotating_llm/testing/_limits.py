"""Exact sliding-window quotas per key: RPM, TPM and RPD."""

from __future__ import annotations

import datetime as dt
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from collections.abc import Callable

    from rotating_llm.testing._config import Limits

__all__ = ["KeyWindows", "Rejection", "Windows"]

LimitKind = Literal["rpm", "tpm", "rpd"]


@dataclass(frozen=True)
class Rejection:
    """Why a request was refused and when the key will have room again.

    Attributes:
        kind: ``"rpm"``, ``"tpm"`` or ``"rpd"``.
        limit: The limit that was hit.
        retry_after: Seconds until the request would be admitted (the whole window
            when the request alone exceeds the limit).
    """

    kind: LimitKind
    limit: int
    retry_after: float

    @property
    def per_day(self) -> bool:
        """Whether the per-day quota was hit."""
        return self.kind == "rpd"


@dataclass
class KeyWindows:
    """The admitted requests of one key inside the current windows."""

    minute: deque[float] = field(default_factory=deque)
    tokens: deque[tuple[float, int]] = field(default_factory=deque)
    token_sum: int = 0
    day: deque[float] = field(default_factory=deque)
    calendar_day: dt.date | None = None
    calendar_count: int = 0

    def prune(self, now: float, window: float, day_window: float) -> None:
        """Forget admissions that left their window."""
        edge = now - window
        while self.minute and self.minute[0] <= edge:
            self.minute.popleft()
        while self.tokens and self.tokens[0][0] <= edge:
            self.token_sum -= self.tokens.popleft()[1]
        day_edge = now - day_window
        while self.day and self.day[0] <= day_edge:
            self.day.popleft()


class Windows:
    """Sliding windows for every key; not thread-safe (the caller locks).

    Args:
        window: Length of the RPM/TPM window in seconds.
        day_window: Length of the sliding RPD window in seconds.
        day_reset: Time zone whose midnight resets RPD (like Gemini's Pacific
            midnight); ``None`` uses the sliding ``day_window`` instead.
        wall: Wall clock (seconds since the epoch) for ``day_reset``.
    """

    def __init__(
        self,
        window: float,
        day_window: float,
        day_reset: dt.tzinfo | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.window = window
        self.day_window = day_window
        self.day_reset = day_reset
        self.wall = wall
        self._keys: dict[str, KeyWindows] = {}

    def _day_count(self, kw: KeyWindows) -> tuple[int, float]:
        """Return the key's requests today and the seconds until the next reset."""
        if self.day_reset is None:
            raise AssertionError("calendar days are off")
        wall = self.wall()
        local = dt.datetime.fromtimestamp(wall, self.day_reset)
        if kw.calendar_day != local.date():
            kw.calendar_day, kw.calendar_count = local.date(), 0
        midnight = dt.datetime.combine(
            local.date() + dt.timedelta(days=1), dt.time(0), tzinfo=self.day_reset
        )
        return kw.calendar_count, midnight.timestamp() - wall

    def reset(self) -> None:
        """Forget every admission."""
        self._keys.clear()

    def usage(self, key: str, now: float) -> dict[str, int]:
        """Return the key's requests and tokens inside the current windows."""
        kw = self._keys.get(key)
        if kw is None:
            return {"minute_requests": 0, "minute_tokens": 0, "day_requests": 0}
        kw.prune(now, self.window, self.day_window)
        return {
            "minute_requests": len(kw.minute),
            "minute_tokens": kw.token_sum,
            "day_requests": self._day_count(kw)[0] if self.day_reset else len(kw.day),
        }

    def admit(self, key: str, now: float, cost: int, limits: Limits) -> Rejection | None:
        """Admit a request costing ``cost`` tokens now, or say why not and until when.

        A refused request consumes nothing.
        """
        kw = self._keys.get(key)
        if kw is None:
            kw = self._keys[key] = KeyWindows()
        kw.prune(now, self.window, self.day_window)
        if limits.rpd is not None and self.day_reset is not None:
            used, until_reset = self._day_count(kw)
            if used >= limits.rpd:
                return Rejection("rpd", limits.rpd, max(until_reset, 0.0))
        elif limits.rpd is not None and len(kw.day) >= limits.rpd:
            when = kw.day[len(kw.day) - limits.rpd] + self.day_window
            return Rejection("rpd", limits.rpd, max(when - now, 0.0))
        if limits.rpm is not None and len(kw.minute) >= limits.rpm:
            when = kw.minute[len(kw.minute) - limits.rpm] + self.window
            return Rejection("rpm", limits.rpm, max(when - now, 0.0))
        if limits.tpm is not None and kw.token_sum + cost > limits.tpm:
            return Rejection("tpm", limits.tpm, self._token_wait(kw, now, cost, limits.tpm))
        kw.minute.append(now)
        if self.day_reset is None:
            kw.day.append(now)
        else:
            self._day_count(kw)  # roll the day over first
            kw.calendar_count += 1
        if cost:
            kw.tokens.append((now, cost))
            kw.token_sum += cost
        return None

    def _token_wait(self, kw: KeyWindows, now: float, cost: int, tpm: int) -> float:
        if cost > tpm:
            return self.window
        excess = kw.token_sum + cost - tpm
        freed = 0
        for at, tokens in kw.tokens:
            freed += tokens
            if freed >= excess:
                return max(at + self.window - now, 0.0)
        return self.window  # pragma: no cover - the sum guarantees a hit above
