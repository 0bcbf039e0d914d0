"""Daily reset boundaries: local midnights of a time zone, as UTC microseconds.

The client only lists candidate boundaries around now; the script compares them with
Redis's own clock to decide which day it is, so a skewed client clock cannot move a reset.
"""

from __future__ import annotations

import threading
import time
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

__all__ = ["DayBoundaries"]


class DayBoundaries:
    """Midnights of ``tz`` from yesterday to the day after tomorrow, cached until tomorrow."""

    def __init__(self, tz: str) -> None:
        self.zone = ZoneInfo(tz)
        self._lock = threading.Lock()
        self._arg = ""
        self._args: tuple[str, ...] = ()
        self._valid_until = 0.0

    def _midnight_us(self, day: date) -> int:
        local = datetime(day.year, day.month, day.day, tzinfo=self.zone)
        return int(local.timestamp()) * 1_000_000

    def args(self) -> tuple[str, ...]:
        """The four boundaries passed to every pool script (the schema's ``day_0..3``)."""
        if time.time() >= self._valid_until:
            self.arg()
        return self._args

    def arg(self) -> str:
        """The boundaries, comma-separated."""
        now = time.time()
        if now < self._valid_until:
            return self._arg  # the hot path: no lock
        with self._lock:
            if now >= self._valid_until:
                today = datetime.fromtimestamp(now, self.zone).date()
                days = [today + timedelta(days=d) for d in (-1, 0, 1, 2)]
                marks = [self._midnight_us(d) for d in days]
                self._args = tuple(str(m) for m in marks)
                self._arg = ",".join(self._args)
                self._valid_until = marks[2] / 1_000_000
            return self._arg

    def next_reset(self) -> float:
        """Seconds since the epoch of the next local midnight (for display only)."""
        today = datetime.now(self.zone).date()
        return self._midnight_us(today + timedelta(days=1)) / 1_000_000
