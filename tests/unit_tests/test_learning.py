"""The one parser of what a provider's answer says about limits (rotating_llm.learning),
on the real body and header shapes the simulator emits."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rotating_llm._bounds import MAX_LIMIT
from rotating_llm.failures import classify_http
from rotating_llm.learning import (
    MAX_RESET_S,
    LearnedLimit,
    ProviderFacts,
    Remaining,
    parse_answer,
    parse_duration,
    parse_headers,
)
from rotating_llm.testing import KEY_QUOTA_IDS, QUOTA_IDS
from rotating_llm.testing._gemini import rate_limited
from rotating_llm.testing._limits import Rejection
from rotating_llm.testing._openai import format_duration, rate_limit_headers
from rotating_llm.testing._quota import QuotaView

KINDS = ("rpm", "tpm", "rpd", "tpd")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("scope", ["project", "key"])
def test_a_gemini_429_names_its_limit_kind_scope_and_value(kind: str, scope: str) -> None:
    status, body, headers = rate_limited(
        Rejection(kind, 7, 3.0, scope=scope),  # type: ignore[arg-type]
        "gemini-2.5-flash",
    )
    facts = parse_answer(status, json.dumps(body), headers)
    qid = (QUOTA_IDS if scope == "project" else KEY_QUOTA_IDS)[kind]
    assert facts.limits == (LearnedLimit(kind, 7, scope, f"429 {qid}", True),)  # type: ignore[arg-type]
    assert facts.remaining == ()
    # the shared classifier path carries the same facts
    assert classify_http(status, body, headers).facts == facts


def test_openai_headers_give_limits_and_remaining() -> None:
    headers = rate_limit_headers(QuotaView(3, 1, 360.0), QuotaView(1000, 20, 0.02))
    facts = parse_answer(200, None, headers)
    assert [(x.kind, x.value, x.refused) for x in facts.limits] == [
        ("rpm", 3, False),
        ("tpm", 1000, False),
    ]
    assert facts.remaining == (Remaining("rpm", 3, 1, 360.0), Remaining("tpm", 1000, 20, 0.02))
    assert facts.remaining[0].used == 2


def test_header_names_in_any_case_and_litellm_s_prefix() -> None:
    facts = parse_headers(
        {
            "LLM_Provider-X-RateLimit-Limit-Requests": "5",
            "llm_provider-x-ratelimit-remaining-requests": "0",
            "llm_provider-x-ratelimit-reset-requests": "1s",
        }
    )
    assert facts.limits[0].value == 5
    assert facts.remaining == (Remaining("rpm", 5, 0, 1.0),)


def test_answers_without_limits_say_nothing() -> None:
    assert not parse_answer(200, None, {"content-type": "application/json"})
    assert not parse_answer(429, "not json", None)
    assert not parse_answer(500, {"error": {"details": [{"@type": "x.QuotaFailure"}]}}, None)
    assert parse_answer(429, {"error": {"code": 429}}, {}) == ProviderFacts()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("6m0s", 360.0), ("1s", 1.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("0s", 0.0),
     ("1.5s", 1.5), ("250us", 0.00025), ("7", 7.0)],
)  # fmt: skip
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "5x", "-1s", "1s2", "s", "inf", "nan", "1e400"])
def test_unreadable_durations_are_absent(text: str) -> None:
    assert parse_duration(text) is None


@given(st.floats(min_value=0, max_value=80_000, allow_nan=False))
def test_durations_the_simulator_writes_read_back(seconds: float) -> None:
    back = parse_duration(format_duration(seconds))
    assert back is not None
    assert back == pytest.approx(math.ceil(seconds * 1000 - 1e-6) / 1000, abs=1e-6)


_ANY = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=30),
    st.sampled_from(["10", "0", "-3", str(10**13), str(MAX_LIMIT), "1e3", " 12 ", "1.5"]),
)


@given(limit=_ANY, remaining=_ANY, reset=_ANY, value=_ANY, qid=st.text(max_size=80))
def test_careless_values_never_raise_and_stay_bounded(
    limit: object, remaining: object, reset: object, value: object, qid: str
) -> None:
    headers = {
        "x-ratelimit-limit-requests": limit,
        "x-ratelimit-remaining-requests": remaining,
        "x-ratelimit-reset-requests": reset,
    }
    body = {
        "error": {
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [{"quotaId": qid, "quotaValue": value}],
                }
            ]
        }
    }
    facts = parse_answer(429, body, headers)
    for lim in facts.limits:
        assert isinstance(lim.value, int) and not isinstance(lim.value, bool)
        assert 1 <= lim.value <= MAX_LIMIT
        assert len(lim.source) <= 130
    for rem in facts.remaining:
        assert 0 <= rem.remaining <= rem.limit <= MAX_LIMIT
        assert 0 <= rem.reset <= MAX_RESET_S


def test_bools_floats_and_out_of_range_limits_are_ignored() -> None:
    for bad in (True, 1.5, "1.5", "0", str(MAX_LIMIT + 1), "-2", None):
        body = {
            "error": {
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                        "violations": [{"quotaId": QUOTA_IDS["rpm"], "quotaValue": bad}],
                    }
                ]
            }
        }
        assert not parse_answer(429, body), bad
        assert not parse_headers({"x-ratelimit-limit-requests": bad}), bad
