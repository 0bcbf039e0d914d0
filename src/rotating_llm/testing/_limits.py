"""Exact sliding-window quotas per bucket (a key or a project): RPM, TPM, RPD and TPD."""

from __future__ import annotations

import datetime as dt
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from collections.abc import Callable

    from rotating_llm.testing._config import Limits

__all__ = ["KeyWindows", "LimitKind", "MinuteView", "Rejection", "Scope", "Windows"]

LimitKind = Literal["rpm", "tpm", "rpd", "tpd"]
Scope = Literal["project", "key"]
"""Whose quota a limit is: the project's (Gemini's real quotas) or the key's alone."""


@dataclass(frozen=True)
class Rejection:
    """Why a request was refused and when the key will have room again.

    Attributes:
        kind: ``"rpm"``, ``"tpm"``, ``"rpd"`` or ``"tpd"``.
        limit: The limit that was hit.
        retry_after: Seconds until the request would be admitted (the whole window
            when the request alone exceeds the limit).
        used: Requests (or tokens) already counted against the limit.
        scope: ``"project"`` (a project's quota, or a key outside any project) or
            ``"key"`` (a per-key true limit).
        requested: What the request asked for: 1 request, or its tokens.
    """

    kind: LimitKind
    limit: int
    retry_after: float
    used: int = 0
    scope: Scope = "project"
    requested: int = 1

    @property
    def per_day(self) -> bool:
        """Whether a per-day quota was hit."""
        return self.kind in ("rpd", "tpd")


@dataclass(frozen=True)
class MinuteView:
    """One bucket's per-minute counts now, and when each window empties completely.

    Attributes:
        requests: Requests inside the window.
        requests_reset: Seconds until the window holds no request.
        tokens: Tokens inside the window.
        tokens_reset: Seconds until the window holds no token.
    """

    requests: int
    requests_reset: float
    tokens: int
    tokens_reset: float


@dataclass
class KeyWindows:
    """The admitted requests and tokens of one bucket inside the current windows."""

    minute: deque[float] = field(default_factory=deque)
    tokens: deque[tuple[float, int]] = field(default_factory=deque)
    token_sum: int = 0
    day: deque[float] = field(default_factory=deque)
    day_tokens: deque[tuple[float, int]] = field(default_factory=deque)
    day_token_sum: int = 0
    calendar_day: dt.date | None = None
    calendar_count: int = 0
    calendar_tokens: int = 0

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
        while self.day_tokens and self.day_tokens[0][0] <= day_edge:
            self.day_token_sum -= self.day_tokens.popleft()[1]


def _token_wait(
    entries: deque[tuple[float, int]], total: int, now: float, cost: int, limit: int, span: float
) -> float:
    """Seconds until ``cost`` more tokens fit under ``limit`` in a sliding ``span``."""
    if cost > limit:
        return span
    excess = total + cost - limit
    freed = 0
    for at, tokens in entries:
        freed += tokens
        if freed >= excess:
            return max(at + span - now, 0.0)
    return span  # pragma: no cover - the sum guarantees a hit above


class Windows:
    """Sliding windows for every bucket; not thread-safe (the caller locks).

    A bucket is any name: the simulator uses one per key and one per project.

    Args:
        window: Length of the RPM/TPM window in seconds.
        day_window: Length of the sliding RPD/TPD window in seconds.
        day_reset: Time zone whose midnight resets RPD and TPD (like Gemini's Pacific
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

    def _get(self, name: str, now: float) -> KeyWindows:
        kw = self._keys.get(name)
        if kw is None:
            kw = self._keys[name] = KeyWindows()
        kw.prune(now, self.window, self.day_window)
        if self.day_reset is not None:
            self._roll_day(kw)
        return kw

    def _roll_day(self, kw: KeyWindows) -> float:
        """Start a new calendar day if it changed; return the seconds until the next reset."""
        if self.day_reset is None:
            raise AssertionError("calendar days are off")
        wall = self.wall()
        local = dt.datetime.fromtimestamp(wall, self.day_reset)
        if kw.calendar_day != local.date():
            kw.calendar_day, kw.calendar_count, kw.calendar_tokens = local.date(), 0, 0
        midnight = dt.datetime.combine(
            local.date() + dt.timedelta(days=1), dt.time(0), tzinfo=self.day_reset
        )
        return max(midnight.timestamp() - wall, 0.0)

    def reset(self) -> None:
        """Forget every admission."""
        self._keys.clear()

    def usage(self, name: str, now: float) -> dict[str, int]:
        """Return the bucket's requests and tokens inside the current windows."""
        if name not in self._keys:
            return {"minute_requests": 0, "minute_tokens": 0, "day_requests": 0, "day_tokens": 0}
        kw = self._get(name, now)
        calendar = self.day_reset is not None
        return {
            "minute_requests": len(kw.minute),
            "minute_tokens": kw.token_sum,
            "day_requests": kw.calendar_count if calendar else len(kw.day),
            "day_tokens": kw.calendar_tokens if calendar else kw.day_token_sum,
        }

    def minute_view(self, name: str, now: float) -> MinuteView:
        """Return the bucket's per-minute counts and when each window empties."""
        kw = self._get(name, now)
        req_reset = kw.minute[-1] + self.window - now if kw.minute else 0.0
        tok_reset = kw.tokens[-1][0] + self.window - now if kw.tokens else 0.0
        return MinuteView(len(kw.minute), max(req_reset, 0.0), kw.token_sum, max(tok_reset, 0.0))

    def check(
        self, name: str, now: float, cost: int, limits: Limits, scope: Scope = "project"
    ) -> Rejection | None:
        """Say whether a request costing ``cost`` tokens fits the bucket now (counts nothing).

        Per-day limits are checked before per-minute ones.
        """
        kw = self._get(name, now)
        if self.day_reset is not None:
            until_reset = self._roll_day(kw)
            if limits.rpd is not None and kw.calendar_count >= limits.rpd:
                return Rejection("rpd", limits.rpd, until_reset, kw.calendar_count, scope)
            if limits.tpd is not None and kw.calendar_tokens + cost > limits.tpd:
                return Rejection("tpd", limits.tpd, until_reset, kw.calendar_tokens, scope, cost)
        else:
            if limits.rpd is not None and len(kw.day) >= limits.rpd:
                when = kw.day[len(kw.day) - limits.rpd] + self.day_window
                return Rejection("rpd", limits.rpd, max(when - now, 0.0), len(kw.day), scope)
            if limits.tpd is not None and kw.day_token_sum + cost > limits.tpd:
                wait = _token_wait(
                    kw.day_tokens, kw.day_token_sum, now, cost, limits.tpd, self.day_window
                )
                return Rejection("tpd", limits.tpd, wait, kw.day_token_sum, scope, cost)
        if limits.rpm is not None and len(kw.minute) >= limits.rpm:
            when = kw.minute[len(kw.minute) - limits.rpm] + self.window
            return Rejection("rpm", limits.rpm, max(when - now, 0.0), len(kw.minute), scope)
        if limits.tpm is not None and kw.token_sum + cost > limits.tpm:
            wait = _token_wait(kw.tokens, kw.token_sum, now, cost, limits.tpm, self.window)
            return Rejection("tpm", limits.tpm, wait, kw.token_sum, scope, cost)
        return None

    def charge(self, name: str, now: float, requests: int, tokens: int) -> None:
        """Count ``requests`` requests and ``tokens`` tokens in the bucket now (no check)."""
        kw = self._get(name, now)
        for _ in range(requests):
            kw.minute.append(now)
            if self.day_reset is None:
                kw.day.append(now)
        if self.day_reset is not None:
            kw.calendar_count += requests
            kw.calendar_tokens += tokens
        if tokens:
            kw.tokens.append((now, tokens))
            kw.token_sum += tokens
            if self.day_reset is None:
                kw.day_tokens.append((now, tokens))
                kw.day_token_sum += tokens

    def admit(self, name: str, now: float, cost: int, limits: Limits) -> Rejection | None:
        """Admit one request costing ``cost`` tokens now, or say why not and until when.

        A refused request consumes nothing.
        """
        rejection = self.check(name, now, cost, limits)
        if rejection is None:
            self.charge(name, now, 1, cost)
        return rejection
