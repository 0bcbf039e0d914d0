"""Test helpers for rotating-llm and its users: ``FakeProvider``, an LLM provider simulator.

It speaks Gemini's REST API (``generateContent``, ``streamGenerateContent``,
``countTokens``) and OpenAI's chat completions, enforces exact per-key RPM/TPM/RPD
limits with the providers' real ``429`` bodies, and injects faults on demand.
Needs the ``testing`` extra (aiohttp); importing this package does not import it.
"""

from __future__ import annotations

from rotating_llm.testing._config import CHARS_PER_TOKEN, Limits, count_tokens, fingerprint
from rotating_llm.testing._faults import Fault
from rotating_llm.testing._gemini import QUOTA_IDS
from rotating_llm.testing._provider import FakeProvider
from rotating_llm.testing._stats import KeyStats

__all__ = [
    "CHARS_PER_TOKEN",
    "QUOTA_IDS",
    "FakeProvider",
    "Fault",
    "KeyStats",
    "Limits",
    "count_tokens",
    "fingerprint",
]
