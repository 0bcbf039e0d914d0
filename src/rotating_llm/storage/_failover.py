"""Run store operations on Redis, and decide what happens while Redis cannot be reached.

Modes (``ROTATING_LLM_ON_REDIS_FAILURE``):
``local`` (default) runs the same scripts on a private in-process store until Redis
answers again; ``allow`` fails open (the original design's behaviour: the caller proceeds without a
reservation); ``deny`` raises :class:`StoreUnavailableError`. Recovery is automatic: Redis
is probed again (``PING``) at most every ``store_retry_interval`` seconds.

Only a lost Redis fails over (refused, or silent to probes past ``store_lost_after``);
a call that ran out of its deadline on a Redis that is slow raises
:class:`StoreTimeoutError` and leaves the mode as it is (see ``_timing``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from rotating_llm.config import FailureMode
from rotating_llm.errors import StoreTimeoutError, StoreUnavailableError
from rotating_llm.storage._errors import translate_errors
from rotating_llm.storage._store import FUNCTION_SCRIPTS, Store, embedded_store, load_script
from rotating_llm.storage._timing import MIN_PROBE, deadline_of, probe_budget

__all__ = ["FailoverStore"]

logger = logging.getLogger("rotating_llm.storage")
T = TypeVar("T")
#: how long closing waits for background work (building the in-process store, a release)
_CLOSE_WAIT_S = 5.0


def _import_embedded() -> None:
    """Import what the in-process store needs ahead of a failover (it takes a while)."""
    with contextlib.suppress(Exception):
        import fakeredis  # noqa: F401


class FailoverStore:
    """The primary store plus what to do when it is lost."""

    def __init__(self, primary: Store, mode: FailureMode, retry_interval: float = 1.0) -> None:
        self.primary = primary
        self.mode: FailureMode = mode
        self.retry_interval = retry_interval
        self._fallback: Store | None = None
        self._down_since: float | None = None
        self._next_probe = 0.0
        self._lock = threading.Lock()
        #: bumped every time the primary comes back: callers re-register their state
        self.generation = 0
        self._threads: list[threading.Thread] = []
        self._closed = False
        if mode == "local" and not primary.is_embedded:
            primary.liveness.on_silence = self._warm_fallback
            threading.Thread(target=_import_embedded, name="rotating-llm-import").start()

    def in_background(self, work: Callable[[], object], name: str) -> None:
        """Run ``work`` on a daemon thread that :meth:`close` waits for (a while) before
        it closes the clients the work may be using."""
        thread = threading.Thread(target=work, name=name, daemon=True)
        with self._lock:
            if self._closed:
                return
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _warm_fallback(self) -> None:
        """Redis went silent: build the in-process store now, on a thread of its own (its
        first import takes a while), so a failover does not make a caller wait for it."""
        if self._fallback is None:
            self.in_background(self._build_fallback, "rotating-llm-fallback")

    def _build_fallback(self) -> None:
        with contextlib.suppress(Exception):  # best effort: it is built on first use anyway
            if self._closed:
                return
            fb = self.fallback
            for name in FUNCTION_SCRIPTS:
                fb.sync.script_load(load_script(name))

    def __repr__(self) -> str:
        state = "down" if self._down_since is not None else "up"
        return f"FailoverStore({self.primary!r}, mode={self.mode!r}, primary={state})"

    @property
    def primary_down(self) -> bool:
        """True while the primary is considered lost."""
        return self._down_since is not None

    @property
    def fallback(self) -> Store:
        """The private in-process store used in ``local`` mode."""
        with self._lock:
            if self._fallback is None:
                self._fallback = embedded_store(self.primary.prefix)
            return self._fallback

    def _mark_down(self, exc: StoreUnavailableError) -> None:
        with self._lock:
            if self._down_since is None:
                self._down_since = time.monotonic()
                logger.warning("Redis lost (%s); on-failure mode %r", exc, self.mode)
            self._next_probe = time.monotonic() + self.retry_interval

    def _mark_up(self) -> None:
        if self._down_since is None:
            return
        with self._lock:
            if self._down_since is not None:
                logger.warning("Redis is back after %.1fs", time.monotonic() - self._down_since)
                self._down_since = None
                self.generation += 1

    def _probe_due(self) -> float | None:
        """``0``: use the primary; ``None``: use the fallback; else ``PING`` the lost
        primary first, waiting at most that long (every ``retry_interval``, within the
        caller's deadline less the time a failover takes), so a caller never waits for a
        silent Redis past its own."""
        if self._down_since is None:
            return 0.0
        now = time.monotonic()
        if now < self._next_probe:
            return None
        budget = probe_budget(deadline_of(self.primary.timing), now)  # (time to fail over)
        if budget is None or budget < MIN_PROBE:
            return None
        wait = min(self.primary.timing.probe_timeout, budget)
        with self._lock:
            self._next_probe = now + wait + self.retry_interval  # one probe at a time
        return wait

    def _probe_failed(self, exc: Exception) -> None:
        with self._lock:
            self._next_probe = time.monotonic() + self.retry_interval
        logger.debug("Redis still lost: %s", type(exc).__name__)

    def _candidate(self) -> Store | None:
        """The primary if it should be tried now, else ``None``."""
        wait = self._probe_due()
        if wait is None:
            return None
        if wait:
            try:
                self.primary.probe(wait)
            except Exception as exc:  # still lost
                self._probe_failed(exc)
                return None
            self._mark_up()  # before the call: it registers and writes back first
        return self.primary

    async def _acandidate(self) -> Store | None:
        """Async twin of :meth:`_candidate` (the ``PING`` runs on a thread)."""
        wait = self._probe_due()
        if wait is None:
            return None
        if wait:
            try:
                await asyncio.to_thread(self.primary.probe, wait)
            except Exception as exc:  # still lost
                self._probe_failed(exc)
                return None
            self._mark_up()  # before the call: it registers and writes back first
        return self.primary

    def run(self, operation: str, fn: Callable[[Store], T]) -> T:
        """Run ``fn`` on the primary, or as the failure mode says when it is lost."""
        store = self._candidate()
        if store is not None:
            try:
                result = fn(store)
            except StoreTimeoutError:  # slow, not lost: Redis keeps the limits
                raise
            except Exception as raw:  # translated once, off the hot path
                try:
                    with translate_errors(operation, store.description):
                        raise raw
                except StoreUnavailableError as exc:
                    self._mark_down(exc)
                    if self.mode != "local":
                        raise
            else:
                self._mark_up()
                return result
        elif self.mode != "local":
            raise StoreUnavailableError(
                f"Redis at {self.primary.description} is unavailable ({operation}); "
                f"retrying every {self.retry_interval}s"
            )
        fb = self.fallback
        with translate_errors(operation, fb.description):
            return fn(fb)

    async def arun(self, operation: str, fn: Callable[[Store], Awaitable[T]]) -> T:
        """Async twin of :meth:`run`."""
        store = await self._acandidate()
        if store is not None:
            try:
                with translate_errors(operation, store.description):
                    result = await fn(store)
            except StoreTimeoutError:  # slow, not lost: Redis keeps the limits
                raise
            except StoreUnavailableError as exc:
                self._mark_down(exc)
                if self.mode != "local":
                    raise
            else:
                self._mark_up()
                return result
        elif self.mode != "local":
            raise StoreUnavailableError(
                f"Redis at {self.primary.description} is unavailable ({operation}); "
                f"retrying every {self.retry_interval}s"
            )
        fb = self.fallback
        with translate_errors(operation, fb.description):
            return await fn(fb)

    def close(self, wait: float = _CLOSE_WAIT_S) -> None:
        """Wait (at most ``wait`` seconds in all) for the background work started with
        :meth:`in_background`, then close every client."""
        with self._lock:
            self._closed = True
            threads, self._threads = self._threads, []
        end = time.monotonic() + wait
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, end - time.monotonic()))
        self.primary.close()
        if self._fallback is not None:
            self._fallback.close()
