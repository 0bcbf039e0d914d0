"""The simulator counts like the providers: projects, true limits, OpenAI headers, spend.

Driven as a real HTTP server through the providers' own SDKs (google-genai, openai)
and raw httpx, so what is asserted is what a client receives on the wire.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from rotating_llm.testing import KEY_QUOTA_IDS, QUOTA_IDS, FakeProvider

Factory = Callable[..., FakeProvider]
K1, K2, K3 = "AIza-project-key-one-000001", "AIza-project-key-two-000002", "AIza-alone-000003"
MODEL = "gemini-2.5-flash"
REQUESTS_METRIC = "generativelanguage.googleapis.com/generate_content_free_tier_requests"
TOKENS_METRIC = "generativelanguage.googleapis.com/generate_content_free_tier_input_token_count"
HELP = {
    "@type": "type.googleapis.com/google.rpc.Help",
    "links": [
        {
            "description": "Learn more about Gemini API quotas",
            "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
        }
    ],
}
HELLO = [{"role": "user", "content": "hi"}]
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str) -> float:
    """Seconds of an OpenAI reset header (Go duration: ``6m0s``, ``1.5s``, ``20ms``)."""
    parts = _DURATION.findall(text)
    assert parts, text
    assert "".join(n + u for n, u in parts) == text, f"not a Go duration: {text!r}"
    return sum(float(n) * _UNITS[u] for n, u in parts)


def gemini(fp: FakeProvider, key: str) -> genai.Client:
    return genai.Client(api_key=key, http_options=types.HttpOptions(base_url=fp.url))


def ask(fp: FakeProvider, key: str, text: str = "hi") -> httpx.Response:
    """One raw ``generateContent`` call."""
    return httpx.post(
        f"{fp.url}/v1beta/models/{MODEL}:generateContent",
        headers={"x-goog-api-key": key},
        json={"contents": [{"role": "user", "parts": [{"text": text}]}]},
        timeout=10,
    )


def chat(fp: FakeProvider, key: str, text: str = "hi") -> httpx.Response:
    """One raw chat-completions call."""
    return httpx.post(
        f"{fp.openai_url}/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]},
        timeout=10,
    )


def violation(body: dict[str, Any]) -> dict[str, Any]:
    """The single QuotaFailure violation of a Gemini 429 body, checking the envelope."""
    error = body["error"]
    assert error["code"] == 429
    assert error["status"] == "RESOURCE_EXHAUSTED"
    failure, help_, retry = error["details"]
    assert failure["@type"] == "type.googleapis.com/google.rpc.QuotaFailure"
    assert help_ == HELP
    assert retry["@type"] == "type.googleapis.com/google.rpc.RetryInfo"
    assert re.fullmatch(r"[1-9]\d*s", retry["retryDelay"]), retry
    (found,) = failure["violations"]
    assert f"limit: {found['quotaValue']}, model: {MODEL}" in error["message"]
    return dict(found)


def retry_seconds(body: dict[str, Any]) -> int:
    return int(body["error"]["details"][2]["retryDelay"][:-1])


# -- projects ------------------------------------------------------------------


PROJECT_CASES = {
    # kind: (limit, prompt, metric, quotaId, per day)
    "rpm": (2, "hi", REQUESTS_METRIC, "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"),
    "tpm": (10, "abcd" * 6, TOKENS_METRIC, "GenerateContentInputTokensPerModelPerMinute-FreeTier"),
    "rpd": (2, "hi", REQUESTS_METRIC, "GenerateRequestsPerDayPerProjectPerModel-FreeTier"),
    "tpd": (10, "abcd" * 6, TOKENS_METRIC, "GenerateContentInputTokensPerModelPerDay-FreeTier"),
}


@pytest.mark.parametrize("kind", sorted(PROJECT_CASES))
def test_keys_of_one_project_share_its_quota_and_get_geminis_real_429(
    kind: str, fake_provider_factory: Factory
) -> None:
    limit, prompt, metric, quota_id = PROJECT_CASES[kind]
    fp = fake_provider_factory(
        projects={"proj-a": [K1, K2]}, window=60.0, **{f"project_{kind}": limit}
    )
    assert QUOTA_IDS[kind] == quota_id
    served = [ask(fp, K1, prompt).status_code]
    if kind in ("rpm", "rpd"):
        served.append(ask(fp, K2, prompt).status_code)
    assert served == [200] * len(served)
    refused = ask(fp, K2, prompt)  # K2 alone used at most 1 of the project's quota
    assert refused.status_code == 429
    assert violation(refused.json()) == {
        "quotaMetric": metric,
        "quotaId": quota_id,
        "quotaDimensions": {"location": "global", "model": MODEL},
        "quotaValue": str(limit),
    }
    wait = retry_seconds(refused.json())
    assert (wait > 60) if kind in ("rpd", "tpd") else (1 <= wait <= 60)
    assert ask(fp, K3, prompt).status_code == 200  # outside the project: no limit
    usage = fp.project_usage("proj-a")
    assert usage["minute_requests"] == len(served)
    assert usage["day_tokens"] == sum(6 if kind in ("tpm", "tpd") else 1 for _ in served)
    assert fp.key_stats(K2).rate_limited == 1
    assert fp.key_stats(K2).rate_limited_daily == int(kind in ("rpd", "tpd"))


def test_the_genai_sdk_sees_the_project_429_with_its_details(
    fake_provider_factory: Factory,
) -> None:
    fp = fake_provider_factory(projects={"proj-a": [K1, K2]}, project_rpm=1, window=60.0)
    first, second = gemini(fp, K1), gemini(fp, K2)
    assert first.models.generate_content(model=MODEL, contents="hi").text
    with pytest.raises(genai_errors.ClientError) as info:
        second.models.generate_content(model=MODEL, contents="hi")
    assert info.value.code == 429
    assert info.value.status == "RESOURCE_EXHAUSTED"
    assert violation(info.value.details)["quotaId"] == QUOTA_IDS["rpm"]


def test_projects_are_checked_at_construction() -> None:
    with pytest.raises(ValueError, match="both 'a' and 'b'"):
        FakeProvider(projects={"a": [K1], "b": [K1]})
    with pytest.raises(ValueError, match="need projects"):
        FakeProvider(project_rpm=3)
    with pytest.raises(ValueError, match="project_tpd"):
        FakeProvider(projects={"a": [K1]}, project_tpd=0)
    with pytest.raises(ValueError, match="unknown limit 'rpx'"):
        FakeProvider(true_limits={K1: {"rpx": 2}})
    with pytest.raises(ValueError, match="set_true_limits"):
        FakeProvider(projects={"a": [K1]}).start().set_limits(K1, rpm=2)


# -- true limits ---------------------------------------------------------------


def test_a_true_limit_below_the_told_one_answers_with_the_per_key_quota_id(
    fake_provider_factory: Factory,
) -> None:
    fp = fake_provider_factory(rpm=100, true_limits={K1: {"rpm": 2}}, window=60.0)
    assert [ask(fp, K1).status_code for _ in range(2)] == [200, 200]
    refused = ask(fp, K1)
    assert refused.status_code == 429
    assert violation(refused.json()) == {
        "quotaMetric": REQUESTS_METRIC,
        "quotaId": "GenerateRequestsPerMinutePerApiKeyPerModel-FreeTier",
        "quotaDimensions": {"location": "global", "model": MODEL},
        "quotaValue": "2",
    }
    assert [ask(fp, K2).status_code for _ in range(3)] == [200] * 3  # K2 has no true limit
    assert all("PerProject" not in qid for qid in KEY_QUOTA_IDS.values())
    assert set(KEY_QUOTA_IDS) == set(QUOTA_IDS) == {"rpm", "tpm", "rpd", "tpd"}
    fp.clear_true_limits(K1)
    assert ask(fp, K1).status_code == 200


def test_a_true_limit_in_a_project_and_the_project_quota_are_told_apart(
    fake_provider_factory: Factory,
) -> None:
    fp = fake_provider_factory(
        projects={"proj-a": [K1, K2]},
        project_rpm=3,
        true_limits={K1: {"tpm": 5}},
        window=60.0,
    )
    over_key = ask(fp, K1, "abcd" * 6)  # 6 tokens > K1's own 5
    assert over_key.status_code == 429
    assert violation(over_key.json())["quotaId"] == KEY_QUOTA_IDS["tpm"]
    assert violation(over_key.json())["quotaValue"] == "5"
    assert [ask(fp, k).status_code for k in (K1, K2, K2)] == [200] * 3
    over_project = ask(fp, K2)
    assert violation(over_project.json())["quotaId"] == QUOTA_IDS["rpm"]
    assert violation(over_project.json())["quotaValue"] == "3"
    fp.set_true_limits(K2, rpd=1)
    fp.reset()  # windows forgotten; constructor's true limits kept, set ones dropped
    assert ask(fp, K1, "abcd" * 6).status_code == 429
    assert [ask(fp, K2).status_code for _ in range(2)] == [200, 200]


# -- OpenAI headers ------------------------------------------------------------


def test_openai_success_carries_the_live_limits_computed_from_the_counts(
    fake_provider_factory: Factory,
) -> None:
    fp = fake_provider_factory(rpm=5, tpm=100, window=60.0)
    client = openai.OpenAI(api_key=K1, base_url=fp.openai_url, max_retries=0)
    prompt = "abcd" * 3  # 3 tokens
    seen = []
    for _ in range(2):
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": prompt}],
        )
        assert raw.parse().choices[0].message.content
        seen.append(raw.headers)
    first = seen[0]
    assert first["x-ratelimit-limit-requests"] == "5"
    assert first["x-ratelimit-limit-tokens"] == "100"
    assert [h["x-ratelimit-remaining-requests"] for h in seen] == ["4", "3"]
    assert [h["x-ratelimit-remaining-tokens"] for h in seen] == ["97", "94"]
    for headers in seen:
        for name in ("requests", "tokens"):
            reset = parse_duration(headers[f"x-ratelimit-reset-{name}"])
            assert 0 < reset <= 60
    assert fp.usage(K1)["minute_requests"] == 2
    client.close()


def test_openai_headers_are_omitted_for_limits_that_are_not_set(
    fake_provider_factory: Factory,
) -> None:
    none = fake_provider_factory()
    assert not [h for h in chat(none, K1).headers if h.startswith("x-ratelimit")]
    rpm_only = fake_provider_factory(rpm=3)
    headers = chat(rpm_only, K1).headers
    assert sorted(h for h in headers if h.startswith("x-ratelimit")) == [
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
    ]
    assert "x-ratelimit-remaining-requests" not in ask(rpm_only, K2).headers  # Gemini: none


def test_openai_429_carries_the_headers_and_their_reset_matches_retry_after(
    fake_provider_factory: Factory,
) -> None:
    fp = fake_provider_factory(rpm=1, tpm=1000, window=30.0)
    client = openai.OpenAI(api_key=K1, base_url=fp.openai_url, max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)  # type: ignore[arg-type]
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)  # type: ignore[arg-type]
    headers = info.value.response.headers
    assert headers["x-ratelimit-limit-requests"] == "1"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-limit-tokens"] == "1000"
    assert headers["x-ratelimit-remaining-tokens"] == "999"
    reset = parse_duration(headers["x-ratelimit-reset-requests"])
    retry_after = int(headers["retry-after"])
    assert retry_after - 1 < reset <= retry_after <= 30
    assert abs(reset - int(headers["retry-after-ms"]) / 1000) <= 0.002
    assert info.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]
    client.close()


def test_openai_headers_show_the_tightest_limit_project_or_true(
    fake_provider_factory: Factory,
) -> None:
    fp = fake_provider_factory(
        projects={"proj-a": [K1, K2]},
        project_rpm=4,
        true_limits={K2: {"rpm": 10, "tpm": 7}},
        window=60.0,
    )
    assert chat(fp, K1).headers["x-ratelimit-remaining-requests"] == "3"
    shared = chat(fp, K2).headers  # the project's 4 is tighter than K2's own 10
    assert (shared["x-ratelimit-limit-requests"], shared["x-ratelimit-remaining-requests"]) == (
        "4",
        "2",
    )
    assert (shared["x-ratelimit-limit-tokens"], shared["x-ratelimit-remaining-tokens"]) == (
        "7",
        "6",
    )
    assert "x-ratelimit-limit-tokens" not in chat(fp, K1).headers  # K1: no token limit at all


def test_streamed_openai_answers_carry_the_headers_too(fake_provider_factory: Factory) -> None:
    fp = fake_provider_factory(rpm=2, window=60.0)
    with httpx.stream(
        "POST",
        f"{fp.openai_url}/chat/completions",
        headers={"Authorization": f"Bearer {K1}"},
        json={"model": "m", "messages": HELLO, "stream": True},
        timeout=10,
    ) as resp:
        assert resp.headers["x-ratelimit-remaining-requests"] == "1"
        assert b"[DONE]" in resp.read()


# -- spend ---------------------------------------------------------------------


def test_spend_by_another_app_counts_like_served_requests(fake_provider_factory: Factory) -> None:
    fp = fake_provider_factory(rpm=3, tpm=100, window=60.0)
    fp.spend(K1, requests=2, tokens=90)
    assert fp.usage(K1) == {
        "minute_requests": 2,
        "minute_tokens": 90,
        "day_requests": 2,
        "day_tokens": 90,
    }
    served = chat(fp, K1, "abcd" * 2)  # 2 tokens
    assert served.status_code == 200
    assert served.headers["x-ratelimit-remaining-requests"] == "0"
    assert served.headers["x-ratelimit-remaining-tokens"] == "8"
    assert chat(fp, K1).status_code == 429
    assert fp.key_stats(K1).served == 1  # the other app's use is not this client's
    fp.spend(K2, tokens=100)
    over = ask(fp, K2)
    assert violation(over.json())["quotaId"] == QUOTA_IDS["tpm"]
    with pytest.raises(ValueError, match="requests must be a non-negative integer"):
        fp.spend(K1, requests=-1)
    with pytest.raises(ValueError, match="both are 0"):
        fp.spend(K1)


def test_spend_on_one_key_of_a_project_is_felt_by_the_others(
    fake_provider_factory: Factory,
) -> None:
    fp = fake_provider_factory(projects={"proj-a": [K1, K2]}, project_rpm=3, window=60.0)
    fp.spend(K1, requests=3)
    refused = ask(fp, K2)
    assert refused.status_code == 429
    assert violation(refused.json())["quotaId"] == QUOTA_IDS["rpm"]
    assert fp.project_usage("proj-a")["minute_requests"] == 3
    assert fp.usage(K2)["minute_requests"] == 0
    with pytest.raises(ValueError, match="unknown project 'proj-b'"):
        fp.project_usage("proj-b")


# -- several client processes ------------------------------------------------------

_WORKER = """
import json, sys, httpx
url, keys, n = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
codes = []
with httpx.Client(timeout=30) as client:
    for i in range(n):
        r = client.post(
            url + "/v1beta/models/gemini-2.5-flash:generateContent",
            headers={"x-goog-api-key": keys[i % len(keys)]},
            json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
        )
        quota = None
        if r.status_code == 429:
            quota = r.json()["error"]["details"][0]["violations"][0]["quotaId"]
        codes.append([r.status_code, quota])
print(json.dumps(codes))
"""


@pytest.mark.multiprocess
def test_a_project_quota_holds_exactly_across_client_processes() -> None:
    keys = [K1, K2, K3]
    with FakeProvider(projects={"proj-a": keys}, project_rpm=4, window=60.0, process=True) as fp:
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", _WORKER, fp.url, ",".join(keys[i:] + keys[:i]), "3"],
                stdout=subprocess.PIPE,
                text=True,
                env={**os.environ},
            )
            for i in range(4)
        ]
        results = [json.loads(w.communicate(timeout=120)[0]) for w in workers]
        codes = [tuple(c) for r in results for c in r]
        assert sum(1 for status, _ in codes if status == 200) == 4
        assert sorted({c for c in codes if c[0] != 200}) == [(429, QUOTA_IDS["rpm"])]
        assert len(codes) == 12
        assert fp.project_usage("proj-a")["minute_requests"] == 4
        assert sum(fp.key_stats(k).served for k in keys) == 4
        assert sum(fp.key_stats(k).rate_limited for k in keys) == 8
