"""FakeProvider's OpenAI dialect, seen from the openai SDK, ChatOpenAI and LiteLLM."""

from __future__ import annotations

import gc
import json
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
from _sdk_clients import collect_sdk_clients  # noqa: F401 (an autouse fixture)
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from rotating_llm.testing import FakeProvider, count_tokens

MODEL = "gpt-4o-mini"
KEY = "sk-test-openai-key-number-one-0001"
OTHER = "sk-test-openai-key-number-two-0002"
Factory = Callable[..., FakeProvider]
HELLO = [{"role": "user", "content": "hello"}]


def sdk(fp: FakeProvider, key: str = KEY, **kw: Any) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=fp.openai_url, max_retries=0, **kw)


def chat(fp: FakeProvider, key: str = KEY, **kw: Any) -> Any:
    """One call on a client closed afterwards (streams are read to the end)."""
    with sdk(fp, key) as client:
        kw.setdefault("messages", HELLO)
        reply = client.chat.completions.create(model=MODEL, **kw)  # type: ignore[arg-type]
        return list(reply) if kw.get("stream") else reply


# -- replies -------------------------------------------------------------------------


def test_chat_completion_with_usage(fake_provider: FakeProvider) -> None:
    reply = chat(fake_provider)
    assert reply.model == MODEL
    assert reply.choices[0].message.content == "You said: hello"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == count_tokens("hello")
    assert reply.usage.completion_tokens == count_tokens("You said: hello")


def test_streaming_with_usage(fake_provider: FakeProvider) -> None:
    chunks = list(chat(fake_provider, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "You said: hello"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == count_tokens("hello") + count_tokens(text)
    without_usage = list(chat(fake_provider, stream=True))
    assert all(c.usage is None for c in without_usage)


def test_tool_calls_structured_output_and_stop(
    fake_provider: FakeProvider, request: pytest.FixtureRequest
) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "add",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            },
        },
    }
    client = sdk(fake_provider)
    request.addfinalizer(client.close)
    called = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is 1 + 2?"}],
        tools=[tool],  # type: ignore[list-item]
        tool_choice="required",
    )
    calls = called.choices[0].message.tool_calls
    assert calls is not None
    assert called.choices[0].finish_reason == "tool_calls"
    assert calls[0].function.name == "add"  # type: ignore[union-attr]
    assert json.loads(calls[0].function.arguments) == {"a": 1, "b": 2}  # type: ignore[union-attr]
    none = client.chat.completions.create(
        model=MODEL,
        messages=HELLO,
        tools=[tool],
        tool_choice="none",  # type: ignore[arg-type, list-item]
    )
    assert none.choices[0].message.tool_calls is None
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    structured = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Where is 'Paris'?"}],
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
    )
    assert json.loads(structured.choices[0].message.content or "") == {"city": "Paris"}
    stopped = client.chat.completions.create(model=MODEL, messages=HELLO, stop=["hel"])
    assert stopped.choices[0].message.content == "You said: "


# -- limits and faults -----------------------------------------------------------------


def test_rate_limits_answer_429_with_retry_after(fake_provider_factory: Factory) -> None:
    fp = fake_provider_factory(rpm=1, rpd=2, window=20.0)
    chat(fp)
    with pytest.raises(openai.RateLimitError) as minute:
        chat(fp)
    assert minute.value.status_code == 429
    retry_after = int(minute.value.response.headers["Retry-After"])
    assert 1 <= retry_after <= 20
    body = minute.value.body
    assert isinstance(body, dict)
    assert body["code"] == "rate_limit_exceeded"
    assert body["type"] == "requests"
    assert "requests per min (RPM)" in body["message"]
    fp.set_limits(OTHER, rpm=10, tpm=5)
    with pytest.raises(openai.RateLimitError) as tokens:
        chat(fp, OTHER, messages=[{"role": "user", "content": "x" * 40}])
    assert "tokens per min (TPM)" in str(tokens.value)
    chat(fp, OTHER)
    chat(fp, OTHER)
    with pytest.raises(openai.RateLimitError, match=r"requests per day \(RPD\)"):
        chat(fp, OTHER)
    assert fp.key_stats(OTHER).rate_limited == 2
    assert fp.key_stats(OTHER).rate_limited_daily == 1


@pytest.mark.parametrize(
    ("fault", "error", "status"),
    [
        ("invalid_key", openai.AuthenticationError, 401),
        ("suspended", openai.PermissionDeniedError, 403),
        ("server_error", openai.InternalServerError, 500),
        ("overloaded", openai.InternalServerError, 503),
    ],
)
def test_status_faults(
    fake_provider: FakeProvider, fault: str, error: type[openai.APIStatusError], status: int
) -> None:
    fake_provider.inject(fault, key=KEY, times=1)
    with pytest.raises(error) as info:
        chat(fake_provider)
    assert info.value.status_code == status
    assert KEY not in str(info.value)
    assert chat(fake_provider).choices[0].message.content


def test_revoked_key_is_401_invalid_api_key(fake_provider: FakeProvider) -> None:
    chat(fake_provider)
    fake_provider.revoke(KEY)
    with pytest.raises(openai.AuthenticationError) as info:
        chat(fake_provider)
    assert isinstance(info.value.body, dict)
    assert info.value.body["code"] == "invalid_api_key"
    assert chat(fake_provider, OTHER).choices
    fake_provider.restore(KEY)
    assert chat(fake_provider).choices


def test_transport_faults(fake_provider: FakeProvider) -> None:
    fake_provider.inject("hang", times=1, delay=30)
    with pytest.raises(openai.APITimeoutError):
        chat(fake_provider, timeout=0.3)
    fake_provider.inject("reset", times=1)
    with pytest.raises(openai.APIConnectionError):
        chat(fake_provider)
    fake_provider.inject("malformed_json", times=1)
    with pytest.raises(json.JSONDecodeError):
        chat(fake_provider)
    fake_provider.inject("stream_cut", times=1, after_chunks=3)
    received: list[str] = []

    def consume() -> None:
        with sdk(fake_provider) as client:
            for chunk in client.chat.completions.create(model=MODEL, messages=HELLO, stream=True):  # type: ignore[arg-type]
                received.append(chunk.choices[0].delta.content or "")

    with pytest.raises(openai.APIConnectionError):
        consume()
    assert received == ["", "You", " said:"]
    assert fake_provider.key_stats(KEY).faults == 4


# -- ChatOpenAI and LiteLLM ---------------------------------------------------------------


class City(BaseModel):
    name: str


def test_chat_openai(fake_provider: FakeProvider) -> None:
    llm = ChatOpenAI(model=MODEL, api_key=KEY, base_url=fake_provider.openai_url, max_retries=0)  # type: ignore[arg-type]
    msg = llm.invoke("Hello")
    assert msg.text == "You said: Hello"
    assert msg.usage_metadata is not None
    assert msg.usage_metadata["input_tokens"] == count_tokens("Hello")
    streamed = list(llm.stream("a b"))
    assert "".join(c.text for c in streamed) == "You said: a b"
    city = llm.with_structured_output(City).invoke("Go to 'Rome'")
    assert city == City(name="Rome")
    called = llm.bind_tools([City], tool_choice="City").invoke("'Oslo'")
    assert called.tool_calls[0]["args"] == {"name": "Oslo"}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("rate_limit", openai.RateLimitError),
        ("invalid_key", openai.AuthenticationError),
        ("suspended", openai.PermissionDeniedError),
        ("overloaded", openai.InternalServerError),
        ("reset", openai.APIConnectionError),
    ],
)
def test_chat_openai_exception_types(
    fake_provider_factory: Factory, fault: str, error: type[Exception]
) -> None:
    fp = fake_provider_factory(rpm=1)
    llm = ChatOpenAI(model=MODEL, api_key=KEY, base_url=fp.openai_url, max_retries=0)  # type: ignore[arg-type]
    if fault == "rate_limit":
        llm.invoke("hi")
    else:
        fp.inject(fault, times=1)
    with pytest.raises(error):
        llm.invoke("hi")


@pytest.mark.slow
@pytest.mark.usefixtures("_collect_litellm_leaks")
@pytest.mark.filterwarnings("ignore:.*using the `ReadOnly` qualifier:UserWarning")
def test_litellm_openai_models(
    fake_provider_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no download attempts
    import litellm

    fp = fake_provider_factory(rpm=1)

    def call(key: str = KEY, **kw: Any) -> Any:
        return litellm.completion(
            model=f"openai/{MODEL}",
            messages=HELLO,
            api_key=key,
            api_base=fp.openai_url,
            num_retries=0,
            **kw,
        )

    reply = call()
    assert reply.choices[0].message.content == "You said: hello"
    assert reply.usage.prompt_tokens == count_tokens("hello")
    with pytest.raises(litellm.RateLimitError):
        call()
    # LiteLLM's own mapping (1.110): 403 becomes a plain APIError, a reset an
    # InternalServerError.
    cases: list[tuple[str, type[Exception], dict[str, Any]]] = [
        ("invalid_key", litellm.AuthenticationError, {}),
        ("suspended", litellm.APIError, {}),
        ("server_error", litellm.InternalServerError, {}),
        ("overloaded", litellm.ServiceUnavailableError, {}),
        ("reset", litellm.InternalServerError, {}),
        ("hang", litellm.Timeout, {"timeout": 0.3}),
        ("malformed_json", litellm.InternalServerError, {}),
    ]
    for fault, error, kw in cases:
        fp.inject(fault, key=OTHER, times=1, delay=30 if fault == "hang" else None)
        with pytest.raises(error):
            call(OTHER, **kw)
    assert fp.key_stats(OTHER).faults == len(cases)


@pytest.fixture
def _collect_litellm_leaks() -> Iterator[None]:
    """LiteLLM leaves an event loop and pooled sockets open; collect them quietly."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
