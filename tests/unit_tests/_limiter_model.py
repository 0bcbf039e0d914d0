"""The Python model the Lua limiter is checked against, and the replay's set-up.

Sliding windows of named counters (keys, and a quota group under its own name) with a
record per reservation. The limiter runs on the embedded store, which runs the very same
scripts, with its TIME following a fake clock, so every replay is exact.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from rotating_llm import APIKey, KeyManager, QuotaGroup, Settings
from rotating_llm.secrets import EnvSecretStore

WINDOW_US = 1_000_000


@dataclass
class Entry:
    at: int
    tokens: int


@dataclass
class Model:
    """Sliding windows of named counters: ``rpm``/``tpm`` limits per name."""

    rpm: dict[str, int]
    tpm: dict[str, int]
    entries: dict[str, dict[str, Entry]] = field(default_factory=dict)

    def live(self, name: str, now: int) -> dict[str, Entry]:
        box = self.entries.setdefault(name, {})
        for rid in [r for r, e in box.items() if e.at <= now - WINDOW_US]:
            del box[rid]
        return box

    def fits(self, name: str, est: int, now: int) -> bool:
        box = self.live(name, now)
        used = sum(e.tokens for e in box.values())
        return len(box) < self.rpm[name] and used + est <= self.tpm[name]

    def fit_time(self, name: str, est: int, now: int) -> float:
        if est > self.tpm[name]:
            return float("inf")
        box = sorted(self.live(name, now).values(), key=lambda e: e.at)
        at = now
        if len(box) >= self.rpm[name]:
            at = max(at, box[len(box) - self.rpm[name]].at + WINDOW_US)
        need = sum(e.tokens for e in box) + est - self.tpm[name]
        freed = 0
        for e in box:
            if need <= 0:
                break
            freed += e.tokens
            if freed >= need:
                at = max(at, e.at + WINDOW_US)
                break
        return at


def fake_clock(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """``time.time`` follows the returned one-item list (microseconds); advance it by hand."""
    clock = [1_000_000 * 1_000_000]
    monkeypatch.setattr(time, "time", lambda: clock[0] / 1_000_000)
    return clock


def replay_manager(
    keys: list[APIKey], strategy: str, quota_groups: list[QuotaGroup] | None = None
) -> Any:
    """A manager on the embedded store: 1 s window, no waiting, secrets for ``k0..kN``."""
    return KeyManager(
        keys,
        quota_groups=quota_groups or [],
        settings=Settings(window_seconds=1.0, max_wait=0, strategy=strategy, redact_logs=False),
        secret_store=EnvSecretStore({f"API_KEY_K{i}": "s" * 12 for i in range(len(keys))}),
    )
