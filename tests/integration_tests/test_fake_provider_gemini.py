"""FakeProvider's Gemini dialect, seen from google-genai, ChatGoogleGenerativeAI and LiteLLM."""

from __future__ import annotations

import gc
import json
import re
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from _sdk_clients import collect_sdk_clients  # noqa: F401 (an autouse fixture)
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from langchain_google_genai import ChatGoogleGenerativeAI
from langchain_google_genai import chat_models as lc_gemini

from rotating_llm.testing import QUOTA_IDS, FakeProvider, count_tokens

MODEL = "gemini-2.5-flash"
KEY = "AIza-test-key-number-one-0001"
OTHER = "AIza-test-key-number-two-0002"

Factory = Callable[..., FakeProvider]


def _transport_errors() -> tuple[type[Exception], ...]:
    """google-genai uses httpx2 when it is installed, else httpx."""
    found: list[type[Exception]] = [httpx.TransportError]
    try:
        import httpx2
    except ImportError:  # pragma: no cover - depends on the installed google-genai
        pass
    else:
        found.append(httpx2.TransportError)
    return tuple(found)


def client(fp: FakeProvider, key: str = KEY, timeout_ms: int | None = None) -> genai.Client:
    return genai.Client(
        api_key=key,
        http_options=types.HttpOptions(
            base_url=fp.url,
            timeout=timeout_ms,
            retry_options=types.HttpRetryOptions(attempts=1),
        ),
    )


def generate(fp: FakeProvider, text: str = "Hello", key: str = KEY, **kw: Any) -> Any:
    c = client(fp, key)  # keep a reference: a collected Client closes its transport
    return c.models.generate_content(model=MODEL, contents=text, **kw)


def detail(exc: genai_errors.APIError, type_suffix: str) -> dict[str, Any]:
    details = exc.details["error"]["details"]
    found = [d for d in details if d["@type"].endswith(type_suffix)]
    assert len(found) == 1, details
    result: dict[str, Any] = found[0]
    return result


# -- replies -------------------------------------------------------------------


def test_generate_content_is_deterministic_with_usage_and_model_version(
    fake_provider: FakeProvider,
) -> None:
    first = generate(fake_provider, "Hello there")
    second = generate(fake_provider, "Hello there")
    assert first.text == second.text == "You said: Hello there"
    assert first.model_version == MODEL
    usage = first.usage_metadata
    assert usage is not None
    assert usage.prompt_token_count == count_tokens("Hello there")
    assert usage.candidates_token_count == count_tokens("You said: Hello there")
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count


def test_system_instruction_is_counted_and_v1_works(fake_provider: FakeProvider) -> None:
    v1 = genai.Client(
        api_key=KEY, http_options=types.HttpOptions(base_url=fake_provider.url, api_version="v1")
    )
    plain = v1.models.generate_content(model=MODEL, contents="Hi")
    system = "You are a terse assistant."
    with_system = generate(
        fake_provider, "Hi", config=types.GenerateContentConfig(system_instruction=system)
    )
    assert plain.usage_metadata is not None
    assert with_system.usage_metadata is not None
    assert with_system.usage_metadata.prompt_token_count == (
        plain.usage_metadata.prompt_token_count + count_tokens(system)
    )


def test_stream_generate_content_streams_words_and_ends_with_usage(
    fake_provider: FakeProvider,
) -> None:
    c = client(fake_provider)
    chunks = list(c.models.generate_content_stream(model=MODEL, contents="one two three"))
    assert len(chunks) == 5
    assert "".join(c.text or "" for c in chunks) == "You said: one two three"
    last = chunks[-1]
    assert last.candidates is not None
    assert last.candidates[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata is not None
    assert last.usage_metadata.candidates_token_count == count_tokens("You said: one two three")


def test_count_tokens_is_free(fake_provider_factory: Factory) -> None:
    fp = fake_provider_factory(rpm=1)
    c = client(fp)
    for _ in range(3):
        assert c.models.count_tokens(model=MODEL, contents="abcdefghi").total_tokens == 3
    assert generate(fp).text
    assert fp.key_stats(KEY).requests == 1


def test_generation_config_and_tools_are_honoured(fake_provider: FakeProvider) -> None:
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    c = client(fake_provider)
    called = c.models.generate_content(
        model=MODEL,
        contents="What is 3 + 4?",
        config=types.GenerateContentConfig(
            tools=[add],
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        ),
    )
    assert called.function_calls is not None
    assert called.function_calls[0].name == "add"
    assert called.function_calls[0].args == {"a": 3, "b": 4}
    structured = c.models.generate_content(
        model=MODEL,
        contents="a joke",
        config=types.GenerateContentConfig(
            response_mime_type="application/json",
            response_json_schema={
                "type": "object",
                "properties": {"setup": {"type": "string"}, "rating": {"type": "integer"}},
            },
        ),
    )
    assert set(json.loads(structured.text or "")) == {"setup", "rating"}
    stopped = c.models.generate_content(
        model=MODEL,
        contents="stop here please",
        config=types.GenerateContentConfig(stop_sequences=["here"], max_output_tokens=100),
    )
    assert stopped.text == "You said: stop "


# -- limits ------------------------------------------------------------------------


def test_rpm_gives_resource_exhausted_with_quota_failure_and_retry_info(
    fake_provider_factory: Factory,
) -> None:
    fp = fake_provider_factory(rpm=2, window=30.0)
    generate(fp)
    generate(fp)
    with pytest.raises(genai_errors.ClientError) as info:
        generate(fp)
    exc = info.value
    assert exc.code == 429
    assert exc.status == "RESOURCE_EXHAUSTED"
    violation = detail(exc, "google.rpc.QuotaFailure")["violations"][0]
    assert violation["quotaId"] == "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
    assert violation["quotaValue"] == "2"
    assert violation["quotaDimensions"]["model"] == MODEL
    delay = detail(exc, "google.rpc.RetryInfo")["retryDelay"]
    assert re.fullmatch(r"\d+s", delay)
    assert 1 <= int(delay[:-1]) <= 30
    assert generate(fp, key=OTHER).text  # another key has its own quota
    streaming = client(fp)
    with pytest.raises(genai_errors.ClientError) as streamed:
        list(streaming.models.generate_content_stream(model=MODEL, contents="hi"))
    assert streamed.value.code == 429  # refused before the first chunk
    stats = fp.key_stats(KEY)
    assert (stats.served, stats.rate_limited, stats.rate_limited_daily) == (2, 2, 0)


def test_rpd_and_tpm_use_their_own_quota_ids(fake_provider_factory: Factory) -> None:
    fp = fake_provider_factory(rpd=1, tpm=10)
    generate(fp, "tiny")
    with pytest.raises(genai_errors.ClientError) as daily:
        generate(fp, "tiny")
    assert detail(daily.value, "QuotaFailure")["violations"][0]["quotaId"] == QUOTA_IDS["rpd"]
    assert "PerDay" in QUOTA_IDS["rpd"]
    with pytest.raises(genai_errors.ClientError) as tokens:
        generate(fp, "x" * 44, key=OTHER)  # 11 tokens > 10
    violation = detail(tokens.value, "QuotaFailure")["violations"][0]
    assert violation["quotaId"] == "GenerateContentInputTokensPerModelPerMinute-FreeTier"
    assert fp.key_stats(KEY).rate_limited_daily == 1


def test_the_window_slides_and_room_comes_back(fake_provider_factory: Factory) -> None:
    fp = fake_provider_factory(rpm=1, window=0.5)
    generate(fp)
    with pytest.raises(genai_errors.ClientError):
        generate(fp)
    time.sleep(0.6)
    assert generate(fp).text
    assert fp.usage(KEY)["minute_requests"] == 1


def test_per_key_limit_overrides(fake_provider_factory: Factory) -> None:
    fp = fake_provider_factory(rpm=5)
    fp.set_limits(KEY, rpm=1)
    generate(fp)
    with pytest.raises(genai_errors.ClientError):
        generate(fp)
    for _ in range(3):
        generate(fp, key=OTHER)
    fp.clear_limits(KEY)
    assert generate(fp).text


# -- keys ----------------------------------------------------------------------------


def test_unknown_revoked_and_suspended_keys(fake_provider_factory: Factory) -> None:
    fp = fake_provider_factory(keys=[KEY, OTHER])
    with pytest.raises(genai_errors.ClientError) as bad:
        generate(fp, key="AIza-not-on-the-list")
    assert (bad.value.code, bad.value.status) == (400, "INVALID_ARGUMENT")
    assert detail(bad.value, "google.rpc.ErrorInfo")["reason"] == "API_KEY_INVALID"
    assert generate(fp).text
    fp.revoke(KEY)
    with pytest.raises(genai_errors.ClientError) as revoked:
        generate(fp)
    assert detail(revoked.value, "ErrorInfo")["reason"] == "API_KEY_INVALID"
    fp.suspend(OTHER)
    with pytest.raises(genai_errors.ClientError) as suspended:
        generate(fp, key=OTHER)
    assert (suspended.value.code, suspended.value.status) == (403, "PERMISSION_DENIED")
    assert OTHER not in str(suspended.value)  # only a fingerprint is echoed
    fp.restore(KEY)
    assert generate(fp).text
    assert fp.key_stats(KEY).auth_errors == 1


# -- faults --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "error", "code", "status"),
    [
        ("invalid_key", genai_errors.ClientError, 400, "INVALID_ARGUMENT"),
        ("suspended", genai_errors.ClientError, 403, "PERMISSION_DENIED"),
        ("server_error", genai_errors.ServerError, 500, "INTERNAL"),
        ("overloaded", genai_errors.ServerError, 503, "UNAVAILABLE"),
    ],
)
@pytest.mark.slow
def test_error_faults_use_the_real_status(
    fake_provider: FakeProvider, fault: str, error: type[Exception], code: int, status: str
) -> None:
    fake_provider.inject(fault, times=1)
    with pytest.raises(error) as info:
        generate(fake_provider)
    assert isinstance(info.value, genai_errors.APIError)
    assert (info.value.code, info.value.status) == (code, status)
    if fault == "overloaded":
        assert "The model is overloaded" in (info.value.message or "")
    assert generate(fake_provider).text  # "times=1": the next request is fine
    stats = fake_provider.key_stats(KEY)
    assert stats.faults_by_kind == {fault: 1}
    assert stats.served == 1


def test_transport_faults(fake_provider: FakeProvider) -> None:
    fake_provider.inject("reset", times=1)
    with pytest.raises(_transport_errors()):
        generate(fake_provider)
    fake_provider.inject("hang", times=1, delay=30)
    impatient = client(fake_provider, timeout_ms=300)
    with pytest.raises(_transport_errors()) as hung:
        impatient.models.generate_content(model=MODEL, contents="x")
    assert "Timeout" in type(hung.value).__name__
    fake_provider.inject("malformed_json", times=1)
    with pytest.raises(ValueError, match=r"Unterminated|JSON"):
        generate(fake_provider)
    fake_provider.inject("latency", times=1, delay=0.2)
    assert generate(fake_provider).text
    assert fake_provider.key_stats(KEY).faults == 4


def test_stream_cut_after_n_chunks(fake_provider: FakeProvider) -> None:
    fake_provider.inject("stream_cut", key=KEY, after_chunks=2, times=1)
    received: list[str] = []
    c = client(fake_provider)
    stream = c.models.generate_content_stream(model=MODEL, contents="one two three four")

    def consume() -> None:
        for chunk in stream:
            received.append(chunk.text or "")

    with pytest.raises(_transport_errors()):
        consume()
    assert received == ["You", " said:"]


@pytest.mark.slow
def test_seeded_probability_faults_on_one_key_only(fake_provider: FakeProvider) -> None:
    fake_provider.inject("overloaded", key=KEY, probability=0.5, seed=3)
    outcomes = []
    for _ in range(20):
        try:
            generate(fake_provider)
            outcomes.append(True)
        except genai_errors.ServerError:
            outcomes.append(False)
    assert 0 < outcomes.count(False) < 20
    assert all(generate(fake_provider, key=OTHER).text for _ in range(5))
    assert fake_provider.key_stats(KEY).faults == outcomes.count(False)
    assert fake_provider.key_stats(OTHER).faults == 0


# -- ChatGoogleGenerativeAI and LiteLLM ---------------------------------------------------


def lc_model(fp: FakeProvider, key: str = KEY, **kw: Any) -> ChatGoogleGenerativeAI:
    return ChatGoogleGenerativeAI(
        model=MODEL, google_api_key=key, base_url=fp.url, max_retries=0, **kw
    )


def test_chat_google_generative_ai_text_stream_and_usage(fake_provider: FakeProvider) -> None:
    llm = lc_model(fake_provider)
    msg = llm.invoke("Hello")
    assert msg.text == "You said: Hello"
    assert msg.usage_metadata is not None
    assert msg.usage_metadata["input_tokens"] == count_tokens("Hello")
    assert msg.response_metadata["model_name"] == MODEL
    chunks = list(llm.stream("a b c"))
    assert "".join(c.text for c in chunks) == "You said: a b c"


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("rate_limit", lc_gemini.GoogleRateLimitError),
        ("invalid_key", lc_gemini.GoogleInvalidRequestError),
        ("suspended", lc_gemini.GooglePermissionDeniedError),
        ("server_error", lc_gemini.GoogleAPIError),
        ("overloaded", lc_gemini.GoogleAPIError),
    ],
)
def test_chat_google_generative_ai_exception_types(
    fake_provider_factory: Factory, fault: str, error: type[Exception]
) -> None:
    fp = fake_provider_factory(rpm=1)
    llm = lc_model(fp)
    if fault == "rate_limit":
        llm.invoke("hi")
    else:
        fp.inject(fault, times=1)
    with pytest.raises(error):
        llm.invoke("hi")


def test_chat_google_generative_ai_transport_faults(fake_provider: FakeProvider) -> None:
    fake_provider.inject("hang", times=1, delay=30)
    with pytest.raises(_transport_errors()):
        lc_model(fake_provider, timeout=0.3).invoke("hi")
    fake_provider.inject("reset", times=1)
    with pytest.raises(_transport_errors()):
        lc_model(fake_provider).invoke("hi")


@pytest.mark.slow
@pytest.mark.usefixtures("_collect_litellm_leaks")
@pytest.mark.filterwarnings("ignore:.*using the `ReadOnly` qualifier:UserWarning")
def test_litellm_gemini_with_api_base(
    fake_provider_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no download attempts
    import litellm

    fp = fake_provider_factory(rpm=1)
    reply = litellm.completion(
        model=f"gemini/{MODEL}",
        messages=[{"role": "user", "content": "hello"}],
        api_key=KEY,
        api_base=fp.gemini_api_base,
        num_retries=0,
    )
    assert reply.choices[0].message.content == "You said: hello"
    with pytest.raises(litellm.RateLimitError):
        litellm.completion(
            model=f"gemini/{MODEL}",
            messages=[{"role": "user", "content": "hello"}],
            api_key=KEY,
            api_base=fp.gemini_api_base,
            num_retries=0,
        )


@pytest.fixture
def _collect_litellm_leaks() -> Iterator[None]:
    """LiteLLM leaves an event loop and pooled sockets open; collect them quietly."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
