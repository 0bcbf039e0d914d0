"""Set-ups shared by the slow-or-lost tests: a Redis stalled in the background, a secret
store that is not ready when read, waiting for a condition, what a pool holds."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import redis

from rotating_llm import KeyManager
from rotating_llm.secrets import EnvSecretStore

__all__ = ["Unready", "eventually", "held", "stall"]


class Unready(EnvSecretStore):
    """An env store whose backend read raises ``interrupt`` or waits for ``gate``."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        super().__init__(environ)
        self.interrupt: BaseException | None = None
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def _fetch(self, key_id: str) -> str:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        if self.interrupt is not None:
            raise self.interrupt
        return super()._fetch(key_id)


def stall(client: redis.Redis, *command: Any) -> threading.Thread:
    """Run ``command`` (``DEBUG SLEEP n``, ...) on ``client`` (closed after it), in the
    background; returns once the server is busy with it."""

    def run() -> None:
        client.execute_command(*command)
        client.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    time.sleep(0.2)  # the server is busy from here on
    return thread


def eventually(cond: Callable[[], bool], timeout: float = 15.0) -> bool:
    """Whether ``cond()`` holds within ``timeout`` seconds (asked every 0.05 s)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def held(km: KeyManager, pool: str = "m") -> int:
    """Reservations the pool's keys hold now, on the manager's store."""
    return sum(u.rpm_count for u in km.limiter.usage(pool).values())
