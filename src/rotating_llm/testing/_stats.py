"""Per-key counters of the simulator."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["KeyStats"]


@dataclass
class KeyStats:
    """What one API key received.

    Attributes:
        requests: Every request that named the key (generate, stream, chat; not
            ``countTokens``).
        served: Requests answered with a reply (stream cuts included).
        rate_limited: ``429`` answers (per-minute and per-day).
        rate_limited_daily: The per-day part of ``rate_limited``.
        auth_errors: Answers for invalid, revoked, suspended or unlisted keys that
            were not injected as faults.
        faults: Injected faults, all kinds.
        faults_by_kind: Injected faults per :class:`Fault` value.
        input_tokens: Prompt tokens of served requests.
        output_tokens: Reply tokens of served requests.
        metadata: Key checks that cost no quota (Gemini ``models.get``, OpenAI
            ``GET /models``), whatever their answer.
    """

    requests: int = 0
    served: int = 0
    rate_limited: int = 0
    rate_limited_daily: int = 0
    auth_errors: int = 0
    faults: int = 0
    faults_by_kind: dict[str, int] = field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    metadata: int = 0

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    def add_fault(self, kind: str) -> None:
        """Count one injected fault."""
        self.faults += 1
        self.faults_by_kind[kind] = self.faults_by_kind.get(kind, 0) + 1

    def to_dict(self) -> dict[str, Any]:
        """Return the counters as JSON-friendly data."""
        data = asdict(self)
        data["total_tokens"] = self.total_tokens
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KeyStats:
        """Rebuild counters from :meth:`to_dict` output."""
        fields = {k: v for k, v in data.items() if k != "total_tokens"}
        return cls(**fields)
