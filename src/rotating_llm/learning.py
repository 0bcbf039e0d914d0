"""What a provider's answer says about a key's limits: the one parser (no I/O).

Two kinds of answer teach the pool:

- Gemini's ``429 RESOURCE_EXHAUSTED`` bodies name the quota that refused the request in
  ``QuotaFailure.violations[]``: ``quotaId`` (the metric, requests or tokens, and the
  period, minute or day: ``GenerateRequestsPerMinutePerProjectPerModel-FreeTier``) and
  ``quotaValue`` (the limit). Gemini counts per project; a quota id that says
  ``PerApiKey`` (or ``PerKey``) is the key's own, every other one the project's.
- OpenAI-style ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` headers, on
  successes and 429s: the live per-minute limits, what is left of them and when they
  are whole again (Go durations: ``6m0s``, ``1s``, ``20ms``).

:func:`parse_answer` turns either into :class:`ProviderFacts`; the key manager stores
them (``KeyManager.learn``). Every number is bounded (``_bounds.MAX_LIMIT``); a value
that is not a clean integer in range is ignored, never an error: it is the provider's.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from rotating_llm._bounds import MAX_LIMIT

__all__ = [
    "LearnedLimit",
    "ProviderFacts",
    "Remaining",
    "parse_answer",
    "parse_duration",
    "parse_headers",
    "parse_quota_failure",
]

Kind = Literal["rpm", "tpm", "rpd", "tpd"]
Scope = Literal["key", "project"]

#: A reset longer than this is taken as this (seconds): a day and a margin.
MAX_RESET_S = 90_000.0
_SOURCE_MAX = 120
_GO_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)")
_INT = re.compile(r"^\s*(\d{1,13})\s*$")
_SCALE = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_HEADER_KINDS: dict[str, Kind] = {"requests": "rpm", "tokens": "tpm"}


@dataclass(frozen=True)
class LearnedLimit:
    """One limit the provider stated.

    Attributes:
        kind: ``rpm``, ``tpm``, ``rpd`` or ``tpd``.
        value: The limit (1 to ``MAX_LIMIT``).
        scope: ``project`` (shared by the keys of a provider project) or ``key``.
        source: Which answer said so (a quota id or a header name; never a secret).
        refused: True from a 429 that named this limit (it can only lower a limit);
            False from a header (adopted, also upwards when allowed).
    """

    kind: Kind
    value: int
    scope: Scope
    source: str
    refused: bool


@dataclass(frozen=True)
class Remaining:
    """What is left of a limit at the provider (from ``x-ratelimit-*`` headers).

    Attributes:
        kind: ``rpm`` or ``tpm``.
        limit: The provider's limit.
        remaining: What is left of it now.
        reset: Seconds until it is whole again (at most :data:`MAX_RESET_S`).
    """

    kind: Kind
    limit: int
    remaining: int
    reset: float

    @property
    def used(self) -> int:
        """What the provider counts as used now (by anyone using the key)."""
        return max(self.limit - self.remaining, 0)


@dataclass(frozen=True)
class ProviderFacts:
    """Everything one answer says about limits (empty when it says nothing)."""

    limits: tuple[LearnedLimit, ...] = ()
    remaining: tuple[Remaining, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.limits or self.remaining)


NO_FACTS = ProviderFacts()


def _count(value: Any, low: int = 1) -> int | None:
    """``value`` (an int or a string of digits) in ``[low, MAX_LIMIT]``, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        n = value
    elif isinstance(value, str) and (found := _INT.match(value)):
        n = int(found.group(1))
    else:
        return None
    return n if low <= n <= MAX_LIMIT else None


def parse_duration(value: Any) -> float | None:
    """Seconds of a Go duration (``"6m0s"``, ``"1s"``, ``"20ms"``, ``"1h2m3.5s"``) or of a
    plain number; None if unreadable, negative or not finite; at most :data:`MAX_RESET_S`."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip()
        if not text or len(text) > 40:
            return None
        try:
            seconds = float(text)
        except ValueError:
            pos, seconds = 0, 0.0
            for part in _GO_PART.finditer(text):
                if part.start() != pos:
                    return None
                seconds += float(part.group(1)) * _SCALE[part.group(2)]
                pos = part.end()
            if pos != len(text):
                return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, MAX_RESET_S)


def quota_kind(quota_id: str) -> tuple[Kind, Scope] | None:
    """The limit kind and scope a Gemini ``quotaId`` names, or None if it names neither
    a per-minute nor a per-day requests or tokens quota."""
    q = quota_id.lower().replace("_", "").replace("-", "")
    if "token" in q:
        metric = "t"
    elif "request" in q:
        metric = "r"
    else:
        return None
    if "perminute" in q:
        period = "m"
    elif "perday" in q:
        period = "d"
    else:
        return None
    kinds: dict[str, Kind] = {"rpm": "rpm", "rpd": "rpd", "tpm": "tpm", "tpd": "tpd"}
    kind = kinds[f"{metric}p{period}"]
    scope: Scope = "key" if ("perapikey" in q or "perkey" in q) else "project"
    return kind, scope


def parse_quota_failure(details: Any) -> tuple[LearnedLimit, ...]:
    """The limits named by the ``QuotaFailure`` entries of a Gemini error's ``details``."""
    out: list[LearnedLimit] = []
    if not isinstance(details, list):
        return ()
    for item in details:
        if not isinstance(item, Mapping) or not str(item.get("@type", "")).endswith("QuotaFailure"):
            continue
        for v in item.get("violations") or []:
            if not isinstance(v, Mapping):
                continue
            qid = str(v.get("quotaId") or "")[:_SOURCE_MAX]
            found = quota_kind(qid)
            value = _count(v.get("quotaValue"))
            if found is not None and value is not None:
                out.append(LearnedLimit(found[0], value, found[1], f"429 {qid}", True))
    return tuple(out)


def _details(body: Any) -> Any:
    """The ``error.details`` list of an error body (dict, JSON text or bytes)."""
    if isinstance(body, (bytes, bytearray)):
        body = bytes(body).decode("utf-8", "replace")
    if isinstance(body, str):
        start = body.find("{")
        if start < 0:
            return None
        try:
            body = json.JSONDecoder().raw_decode(body[start:])[0]
        except ValueError:
            return None
    if isinstance(body, list) and len(body) == 1:
        body = body[0]
    if not isinstance(body, Mapping):
        return None
    err = body.get("error", body)
    return err.get("details") if isinstance(err, Mapping) else None


def parse_headers(headers: Mapping[str, Any] | None) -> ProviderFacts:
    """The limits and remaining budgets of ``x-ratelimit-*`` headers (any letter case;
    LiteLLM's ``llm_provider-`` prefix is accepted too)."""
    if not headers:
        return NO_FACTS
    lowered: dict[str, Any] = {}
    for name, value in headers.items():
        n = str(name).lower()
        if n.startswith("llm_provider-"):
            n = n[len("llm_provider-") :]
        if n.startswith("x-ratelimit-"):
            lowered.setdefault(n, value)
    if not lowered:
        return NO_FACTS
    limits: list[LearnedLimit] = []
    remaining: list[Remaining] = []
    for word, kind in _HEADER_KINDS.items():
        limit = _count(lowered.get(f"x-ratelimit-limit-{word}"))
        if limit is None:
            continue
        limits.append(LearnedLimit(kind, limit, "project", f"x-ratelimit-limit-{word}", False))
        left = _count(lowered.get(f"x-ratelimit-remaining-{word}"), low=0)
        reset = parse_duration(lowered.get(f"x-ratelimit-reset-{word}"))
        if left is not None and reset is not None:
            remaining.append(Remaining(kind, limit, min(left, limit), reset))
    return ProviderFacts(tuple(limits), tuple(remaining))


def parse_answer(
    status: int | None, body: Any = None, headers: Mapping[str, Any] | None = None
) -> ProviderFacts:
    """Everything a provider's answer (``status``, error ``body``, ``headers``) says about
    limits: the headers' on any answer, a 429 body's ``QuotaFailure`` limits."""
    facts = parse_headers(headers)
    if status == 429 and body is not None:
        named = parse_quota_failure(_details(body))
        if named:
            facts = ProviderFacts(named + facts.limits, facts.remaining)
    return facts
