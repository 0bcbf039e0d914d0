"""Faults injected on demand: per key or global, scripted or by seeded probability."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

__all__ = ["ERROR_FAULTS", "Fault", "FaultBook", "FaultRule"]


class Fault(str, Enum):
    """What the simulator can do to a request instead of answering it normally."""

    INVALID_KEY = "invalid_key"
    """Gemini ``400 INVALID_ARGUMENT`` / ``API_KEY_INVALID``; OpenAI ``401``."""
    SUSPENDED = "suspended"
    """``403 PERMISSION_DENIED`` (key or project suspended)."""
    SERVER_ERROR = "server_error"
    """``500 INTERNAL``."""
    OVERLOADED = "overloaded"
    """``503 UNAVAILABLE``: "The model is overloaded"."""
    LATENCY = "latency"
    """Answer normally after ``delay`` seconds."""
    HANG = "hang"
    """Never answer (for ``delay`` seconds, default 300), then drop the connection."""
    RESET = "reset"
    """Reset the TCP connection without an answer."""
    MALFORMED_JSON = "malformed_json"
    """``200`` with a truncated JSON body (streams: one truncated event)."""
    STREAM_CUT = "stream_cut"
    """Reset the connection after ``after_chunks`` stream chunks (non-streaming: no answer)."""


#: Faults answered without serving the request (they consume no quota).
ERROR_FAULTS = frozenset(
    {
        Fault.INVALID_KEY,
        Fault.SUSPENDED,
        Fault.SERVER_ERROR,
        Fault.OVERLOADED,
        Fault.HANG,
        Fault.RESET,
        Fault.MALFORMED_JSON,
    }
)


@dataclass
class FaultRule:
    """One injection rule.

    Attributes:
        id: Rule number, for ``remove_fault``.
        fault: What to do.
        key: Only requests with this API key (``None``: every key).
        times: Apply to this many more matching requests (``None``: forever).
        probability: Chance that a matching request is hit (1.0: always).
        delay: Seconds for ``latency`` and ``hang``.
        after_chunks: Chunks sent before ``stream_cut`` resets the connection.
    """

    id: int
    fault: Fault
    key: str | None = None
    times: int | None = None
    probability: float = 1.0
    delay: float | None = None
    after_chunks: int = 1
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def describe(self) -> dict[str, Any]:
        """Return the rule as JSON-friendly data, without the key itself."""
        from rotating_llm.testing._config import fingerprint

        return {
            "id": self.id,
            "fault": self.fault.value,
            "key": None if self.key is None else fingerprint(self.key),
            "times": self.times,
            "probability": self.probability,
            "delay": self.delay,
            "after_chunks": self.after_chunks,
        }


def parse_fault(value: object) -> Fault:
    """Return a :class:`Fault` from a member or its name, else raise ``ValueError``."""
    try:
        return Fault(value)
    except ValueError:
        names = ", ".join(f.value for f in Fault)
        raise ValueError(f"fault must be one of {names}; got {value!r}") from None


class FaultBook:
    """The active rules, checked in the order they were added."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._next_id = 1

    def add(
        self,
        fault: Fault | str,
        *,
        key: str | None = None,
        times: int | None = None,
        probability: float | None = None,
        seed: int | None = None,
        delay: float | None = None,
        after_chunks: int | None = None,
    ) -> FaultRule:
        """Validate and add a rule; raise ``ValueError`` naming a bad argument."""
        kind = parse_fault(fault)
        if key is not None and (not isinstance(key, str) or not key):
            raise ValueError("key must be a non-empty string or None")
        if times is not None and (
            isinstance(times, bool) or not isinstance(times, int) or times < 1
        ):
            raise ValueError(f"times must be a positive integer or None, got {times!r}")
        prob = 1.0 if probability is None else probability
        if isinstance(prob, bool) or not isinstance(prob, (int, float)) or not 0.0 <= prob <= 1.0:
            raise ValueError(f"probability must be between 0 and 1, got {probability!r}")
        if delay is not None and (
            isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay < 0
        ):
            raise ValueError(f"delay must be a non-negative number of seconds, got {delay!r}")
        if kind is Fault.LATENCY and delay is None:
            raise ValueError("delay is required for the latency fault")
        chunks = 1 if after_chunks is None else after_chunks
        if isinstance(chunks, bool) or not isinstance(chunks, int) or chunks < 0:
            raise ValueError(f"after_chunks must be a non-negative integer, got {after_chunks!r}")
        rule = FaultRule(
            id=self._next_id,
            fault=kind,
            key=key,
            times=times,
            probability=float(prob),
            delay=None if delay is None else float(delay),
            after_chunks=chunks,
            rng=random.Random(seed),
        )
        self._next_id += 1
        self._rules.append(rule)
        return rule

    def remove(self, rule_id: int) -> bool:
        """Remove one rule; return whether it existed."""
        before = len(self._rules)
        self._rules = [r for r in self._rules if r.id != rule_id]
        return len(self._rules) != before

    def clear(self, key: str | None = None) -> None:
        """Remove every rule, or only the rules bound to ``key``."""
        self._rules = [] if key is None else [r for r in self._rules if r.key != key]

    def rules(self) -> list[FaultRule]:
        """Return the active rules."""
        return list(self._rules)

    def pick(self, key: str) -> FaultRule | None:
        """Return the first rule that hits a request with ``key`` (consuming a use)."""
        for rule in self._rules:
            if rule.key is not None and rule.key != key:
                continue
            if rule.probability < 1.0 and rule.rng.random() >= rule.probability:
                continue
            if rule.times is not None:
                rule.times -= 1
                if rule.times <= 0:
                    self._rules.remove(rule)
            return rule
        return None
