"""How long a store call may take, and how a slow Redis is told from a lost one.

A call's deadline comes from its caller: an acquire allows ``max_wait`` plus one
``store_deadline`` (set with :func:`call_deadline` around the whole acquire), any
other call ``settings.max_wait`` plus one ``store_deadline`` from when it starts. Within
that deadline a call waits for its reply on the same connection, in short pieces; after
a piece without a reply it asks :class:`Liveness` whether Redis is lost. Redis is lost
when a connection is refused (or reset and then refused), or when a probe (``PING`` on a
fresh connection) has not been answered for ``store_lost_after`` seconds. A Redis that
answers the probe is slow, not lost: the call keeps waiting, and at its deadline fails
with :class:`~rotating_llm.errors.StoreTimeoutError` (no failover).

Nothing here waits past the deadline: a probe waits at most what is left of it (none
with under ``MIN_PROBE`` left), connecting and the reply share one timeout, and a call
with under ``MIN_LEFT`` left neither probes nor fails over (failing over takes time of
its own): it refuses by its deadline (a reply that comes first is taken); the next
call finds Redis lost and fails over.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis.exceptions as rex

if TYPE_CHECKING:
    from rotating_llm.config import Settings

__all__ = [
    "MIN_LEFT",
    "MIN_PROBE",
    "Liveness",
    "Timing",
    "call_deadline",
    "connect_end",
    "deadline_of",
    "piece_of",
    "probe_budget",
    "timing_of",
]

_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "rotating_llm_store_deadline", default=None
)
#: The longest single wait for a reply before the probe is asked (seconds).
MAX_PIECE = 0.25
#: a call with less than this left of its deadline neither probes nor fails over
MIN_LEFT = 0.05
#: no probe is sent with less time than this to wait for it
MIN_PROBE = 0.01


@dataclass(frozen=True)
class Timing:
    """A store's time settings (seconds)."""

    #: what a call may take past the caller's wait
    deadline: float = 1.0
    #: no answer to a probe for this long: Redis is lost
    lost_after: float = 3.0
    #: the budget of a call made outside an acquire
    default_budget: float = 31.0
    #: the longest connect attempt
    connect_timeout: float = 2.0

    @property
    def probe_timeout(self) -> float:
        """How long a probe waits for ``PING`` (a loaded machine answers slowly)."""
        return max(self.piece, min(1.0, self.lost_after / 3))

    @property
    def piece(self) -> float:
        """One wait for a reply, between two looks at the probe."""
        return min(MAX_PIECE, self.lost_after / 4)


def timing_of(settings: Settings) -> Timing:
    """The time settings of a store opened with ``settings``."""
    return Timing(
        deadline=settings.store_deadline,
        lost_after=settings.store_lost_after,
        default_budget=settings.max_wait + settings.store_deadline,
    )


def piece_of(timing: Timing, deadline: float, now: float) -> float:
    """The next wait: a piece, or what is left before ``deadline`` if that is less."""
    return max(0.0, min(timing.piece, deadline - now))


@contextmanager
def call_deadline(at: float) -> Iterator[None]:
    """Store calls made inside the block (this thread or task) end by ``at`` (monotonic)."""
    token = _DEADLINE.set(at)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def probe_budget(deadline: float, now: float) -> float | None:
    """How long a probe may wait for a call due at ``deadline``, keeping ``MIN_LEFT`` for
    a failover; ``None`` when less than ``MIN_LEFT`` is left (then the call only waits)."""
    left = deadline - now
    return None if left < MIN_LEFT else left - MIN_LEFT


def connect_end(deadline: float, now: float) -> float:
    """When a connect attempt for a call due at ``deadline`` must give up: early enough
    to leave ``MIN_LEFT`` for the verdict (the attempt was the probe) and as much again
    for a failover, when there is room."""
    return deadline - 2 * MIN_LEFT if deadline - now > 3 * MIN_LEFT else deadline


def deadline_of(timing: Timing) -> float:
    """The deadline of a call starting now: the caller's, else now plus the default."""
    at = _DEADLINE.get()
    return time.monotonic() + timing.default_budget if at is None else at


class Liveness:
    """Whether one Redis server is lost, from probes (at most one running at a time).

    Args:
        probe: Sends ``PING`` on a fresh connection with the given timeout; raises
            redis-py's ``ConnectionError`` when refused, ``TimeoutError`` when silent.
        timing: The store's time settings.
    """

    def __init__(self, probe: Callable[[float], object], timing: Timing) -> None:
        self._probe = probe
        self.timing = timing
        self._silent_since: float | None = None
        self._probing = threading.Lock()
        self._refused = False
        #: called (on the caller's thread) when a silence starts: get ready to fail over
        self.on_silence: Callable[[], object] | None = None

    def answered(self) -> None:
        """Redis answered a call: it is not lost."""
        if self._silent_since is not None or self._refused:
            self._silent_since = None
            self._refused = False

    def refused(self) -> None:
        """A connection was refused: Redis is lost now."""
        if not self._refused and self.on_silence is not None:
            self.on_silence()
        self._refused = True

    def is_lost(self, budget: float = 1.0) -> bool:
        """After a piece without a reply: probe (unless a probe already runs, or
        ``budget`` is under ``MIN_PROBE``; the probe waits at most ``budget`` seconds)
        and say whether Redis is lost."""
        now = time.monotonic()
        if self._silent_since is None:
            self._silent_since = now - self.timing.piece  # the caller waited that long
            if self.on_silence is not None:
                self.on_silence()
        wait = min(self.timing.probe_timeout, budget)
        if budget >= MIN_PROBE and self._probing.acquire(blocking=False):
            try:
                self._probe(wait)
            except rex.TimeoutError:
                pass
            except (rex.ConnectionError, OSError):
                self._refused = True
            else:
                self._silent_since = None
                self._refused = False
                return False
            finally:
                self._probing.release()
        since = self._silent_since
        lost_after = self.timing.lost_after
        return self._refused or (since is not None and time.monotonic() - since >= lost_after)

    def budget_for(self, deadline: float) -> float | None:
        """:func:`probe_budget` for a call due at ``deadline`` that got no answer for a
        piece; with no time left for a probe the silence is still counted, so that a
        later call with time left finds Redis lost and fails over."""
        budget = probe_budget(deadline, time.monotonic())
        if budget is None:
            self.is_lost(0.0)  # (no probe: only the silence's start is noted)
        return budget

    def lost_reason(self) -> str:
        """Why Redis is considered lost, for the error message."""
        if self._refused:
            return "connection refused"
        return f"no answer to a probe for {self.timing.lost_after:g}s"
