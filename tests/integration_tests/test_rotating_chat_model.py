"""``RotatingChatModel`` against the simulator: every row of DESIGN.md's failure table,
streams cut mid-way, and a pool without capacity (at once and after a wait)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator

import pytest

try:  # tests/*/ are packages (same basenames in unit_tests and integration_tests)
    from ._lc_fixtures import AIOHTTP_INHERITANCE, GPT, Pool, apool, pool
except ImportError:  # rootdir-less layout: this directory is on sys.path
    from _lc_fixtures import AIOHTTP_INHERITANCE, GPT, Pool, apool, pool  # type: ignore[no-redef]
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.exceptions import (
    ModelAPIError,
    ModelInvalidRequestError,
    ModelRateLimitError,
    ModelTimeoutError,
)
from langchain_core.load import dumpd
from langchain_core.messages import AIMessage

from rotating_llm import AllKeysExhaustedError, RequestTooLargeError
from rotating_llm.langchain import (
    RotatingAPIError,
    RotatingInvalidRequestError,
    RotatingRateLimitError,
    RotatingTimeoutError,
)
from rotating_llm.langchain import RotatingChatModel as RCM

pytestmark = [pytest.mark.redis, pytest.mark.filterwarnings(AIOHTTP_INHERITANCE)]


def model(p: Pool, **kw: object) -> RCM:
    opts: dict[str, object] = {"backoff_base": 0.01, "backoff_max": 0.05}
    opts.update(kw)
    return RCM(model=p.keys[0].model_name, key_manager=p.manager, **opts)


def served(p: Pool) -> dict[str, int]:
    return {k.key_id: p.stats(k.key_id).served for k in p.keys}


def _collect(stream: Iterator[AIMessage], into: list[AIMessage]) -> list[AIMessage]:
    for chunk in stream:
        into.append(chunk)
    return []


async def _acollect(stream: AsyncIterator[AIMessage], into: list[AIMessage]) -> None:
    async for chunk in stream:
        into.append(chunk)


def no_secret_in(p: Pool, *texts: str) -> None:
    for text in texts:
        for secret in p.secrets.values():
            assert secret not in text


# -- success path -----------------------------------------------------------------------


def test_invoke_reports_key_attempts_and_reconciles_usage() -> None:
    with pool(3) as p:
        reply = model(p, max_tokens=50).invoke("Hello there, simulator")
        key_id = reply.response_metadata["key_id"]
        assert reply.response_metadata["attempts"] == 1
        assert reply.usage_metadata is not None
        # the reservation (estimate + max_tokens) was replaced by the real usage
        assert p.status(key_id)["tpm_usage"] == reply.usage_metadata["total_tokens"]
        no_secret_in(p, json.dumps(reply.response_metadata, default=str), repr(reply))


def test_requests_spread_over_every_key() -> None:
    with pool(3, key_rpm=2) as p:
        llm = model(p)
        replies = llm.batch([f"question {i}" for i in range(6)])
        assert sorted(r.response_metadata["key_id"] for r in replies) == [
            "k0",
            "k0",
            "k1",
            "k1",
            "k2",
            "k2",
        ]
        assert served(p) == {"k0": 2, "k1": 2, "k2": 2}


async def test_abatch_and_astream_rotate_too() -> None:
    async with apool(2, key_rpm=2) as p:
        llm = model(p)
        replies = await llm.abatch(["a", "b", "c"])
        assert {r.response_metadata["key_id"] for r in replies} == {"k0", "k1"}
        chunks = [c async for c in llm.astream("one more")]
        assert "".join(str(c.content) for c in chunks).strip()
        assert sum(served(p).values()) == 4


def test_secrets_never_in_repr_dumpd_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with pool(2) as p:
        llm = model(p)
        p.provider.inject("invalid_key", key=p.secret("k0"))
        p.provider.inject("invalid_key", key=p.secret("k1"))
        with pytest.raises(AllKeysExhaustedError) as info:
            llm.invoke("hi")
        texts = [repr(llm), json.dumps(dumpd(llm), default=str), str(info.value), caplog.text]
        texts.append(repr(info.value.__cause__))
        no_secret_in(p, *texts)
        assert "k0" in str(info.value) and "k1" in str(info.value)


def test_callbacks_and_langsmith_params() -> None:
    events: list[str] = []

    class Recorder(BaseCallbackHandler):
        def on_chat_model_start(self, serialized, messages, **kw):  # type: ignore[no-untyped-def]
            events.append("start:" + kw["metadata"]["ls_provider"])

        def on_llm_new_token(self, token, **kw):  # type: ignore[no-untyped-def]
            events.append("token")

        def on_llm_end(self, response, **kw):  # type: ignore[no-untyped-def]
            events.append("end")

    with pool(1) as p:
        list(model(p).stream("a short story", config={"callbacks": [Recorder()]}))
    assert events[0] == "start:rotating_llm"
    assert events.count("token") >= 2
    assert events[-1] == "end"


# -- 429 per minute ---------------------------------------------------------------------


def test_provider_429_cools_the_key_for_its_retry_delay_and_moves_on() -> None:
    with pool(2) as p:
        p.provider.set_limits(p.secret("k0"), rpm=1)  # the provider is stricter than our config
        llm = model(p)
        replies = [llm.invoke(f"question {i}") for i in range(3)]
        assert [r.response_metadata["key_id"] for r in replies].count("k1") == 2
        retried = [r for r in replies if r.response_metadata["attempts"] == 2]
        assert len(retried) == 1 and retried[0].response_metadata["key_id"] == "k1"
        status = p.status("k0")
        assert status["in_cooldown"]
        assert 0 < status["cooldown_remaining"] <= 60  # the provider's RetryInfo delay
        assert "429" in status["cooldown_reason"]
        assert p.stats("k0").rate_limited == 1


def test_openai_429_uses_retry_after_header() -> None:
    with pool(2, kind="openai", model=GPT) as p:
        p.provider.set_limits(p.secret("k0"), rpm=1)
        # another app just used k0: the pool's first call there meets a 429 (answers carry
        # x-ratelimit-* headers, so without it the limit is learned from a success first)
        p.provider.spend(p.secret("k0"), requests=1)
        llm = model(p)
        replies = [llm.invoke(f"question {i}") for i in range(3)]
        assert max(r.response_metadata["attempts"] for r in replies) == 2
        assert p.status("k0")["in_cooldown"]
        assert 0 < p.status("k0")["cooldown_remaining"] <= 60
        assert p.stats("k0").rate_limited == 1


# -- 429 per day ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["gemini", "openai"])
def test_per_day_quota_cools_the_key_until_the_daily_reset(kind: str) -> None:
    with pool(2, kind=kind, model=GPT if kind == "openai" else "gemini-2.5-flash") as p:
        p.provider.set_limits(p.secret("k0"), rpd=1)
        llm = model(p)
        replies = [llm.invoke(f"question {i}") for i in range(3)]
        assert max(r.response_metadata["attempts"] for r in replies) == 2
        assert p.stats("k0").rate_limited_daily == 1
        status = p.status("k0")
        assert status["in_cooldown"]
        assert status["cooldown_remaining"] > 60  # until midnight, not a minute's backoff


# -- 401/403/API_KEY_INVALID ---------------------------------------------------------------


@pytest.mark.parametrize("fault", ["invalid_key", "suspended"])
def test_refused_key_is_disabled_and_the_request_served_elsewhere(fault: str) -> None:
    with pool(2) as p:
        p.provider.inject(fault, key=p.secret("k0"))
        reply = model(p).invoke("hi")
        assert reply.response_metadata["key_id"] == "k1"
        status = p.status("k0")
        assert status["disabled"]
        reason = status["disabled_reason"]
        assert ("API_KEY_INVALID" in reason) if fault == "invalid_key" else ("403" in reason)
        # later requests never try k0 again
        assert model(p).invoke("again").response_metadata["attempts"] == 1
        assert p.stats("k0").requests == 1


def test_openai_401_disables_the_key() -> None:
    with pool(2, kind="openai", model=GPT) as p:
        p.provider.revoke(p.secret("k0"))
        reply = model(p).invoke("hi")
        assert reply.response_metadata["key_id"] == "k1"
        assert p.status("k0")["disabled"]


def test_every_key_refused_is_a_rate_limit_error_without_retry_time() -> None:
    with pool(2) as p:
        for k in ("k0", "k1"):
            p.provider.revoke(p.secret(k))
        with pytest.raises(RotatingRateLimitError) as info:
            model(p).invoke("hi")
        assert info.value.retry_after is None
        assert set(info.value.reasons) == {"k0", "k1"}


# -- 5xx, overloaded, timeout, reset --------------------------------------------------------


@pytest.mark.parametrize("fault", ["server_error", "overloaded", "reset", "malformed_json"])
def test_model_side_failure_is_retried_and_blames_no_key(fault: str) -> None:
    with pool(1) as p:
        p.provider.inject(fault, times=2)
        reply = model(p).invoke("hi")
        assert reply.response_metadata["attempts"] == 3
        status = p.status("k0")
        assert not status["disabled"] and not status["in_cooldown"]


def test_timeout_is_retried_then_succeeds() -> None:
    with pool(1) as p:
        p.provider.inject("hang", times=1, delay=5)
        reply = model(p, timeout=0.5).invoke("hi")
        assert reply.response_metadata["attempts"] == 2
        assert not p.status("k0")["in_cooldown"]


def test_model_side_failures_stop_after_max_attempts() -> None:
    with pool(2) as p:
        p.provider.inject("overloaded")
        with pytest.raises(RotatingAPIError) as info:
            model(p, max_attempts=3).invoke("hi")
        err = info.value
        assert isinstance(err, ModelAPIError)
        assert err.attempts == 3 and err.status == 503
        assert "503" in str(err) and err.key_id in {"k0", "k1"}
        assert sum(p.stats(k.key_id).requests for k in p.keys) == 3


def test_persistent_timeouts_raise_a_timeout_error() -> None:
    with pool(1) as p:
        p.provider.inject("hang", delay=3)
        with pytest.raises(RotatingTimeoutError) as info:
            model(p, timeout=0.3, max_attempts=2).invoke("hi")
        assert isinstance(info.value, ModelTimeoutError)


# -- 400 invalid request ---------------------------------------------------------------------


def test_invalid_request_is_not_retried_and_blames_no_key() -> None:
    with pool(2, kind="openai", model=GPT) as p:
        with pytest.raises(RotatingInvalidRequestError) as info:
            model(p).invoke([])  # the provider answers 400: messages must be non-empty
        err = info.value
        assert isinstance(err, ModelInvalidRequestError)
        assert err.status == 400 and err.attempts == 1
        assert sum(p.stats(k.key_id).requests for k in p.keys) == 1
        assert not any(p.status(k.key_id)["disabled"] for k in p.keys)


def test_request_larger_than_every_tpm_fails_at_once() -> None:
    with pool(2, key_tpm=100) as p:
        with pytest.raises(RequestTooLargeError):
            model(p).invoke("x" * 2000)
        assert sum(p.stats(k.key_id).requests for k in p.keys) == 0


# -- streams ------------------------------------------------------------------------------


def test_stream_switches_key_before_its_first_chunk() -> None:
    with pool(2) as p:
        p.provider.inject("invalid_key", key=p.secret("k0"))
        chunks = list(model(p).stream("a story about keys"))
        assert chunks[0].response_metadata["key_id"] == "k1"
        assert chunks[0].response_metadata["attempts"] == 2
        assert p.status("k0")["disabled"]


def test_stream_cut_midway_raises_and_never_switches_key() -> None:
    with pool(2) as p:
        p.provider.inject("stream_cut", after_chunks=2, times=1)
        got: list[AIMessage] = []
        with pytest.raises(RotatingAPIError) as info:
            got.extend(_collect(model(p).stream("tell me a long story about rotating keys"), got))
        assert got, "the caller received chunks before the cut"
        assert info.value.key_id == got[0].response_metadata["key_id"]
        assert sum(p.stats(k.key_id).requests for k in p.keys) == 1  # no second key tried
        assert not p.status(info.value.key_id)["disabled"]


async def test_astream_cut_midway_raises_and_never_switches_key() -> None:
    async with apool(2) as p:
        p.provider.inject("stream_cut", after_chunks=2, times=1)
        got: list[AIMessage] = []
        with pytest.raises(RotatingAPIError):
            await _acollect(model(p).astream("tell me a long story about rotating keys"), got)
        assert got
        assert sum(p.stats(k.key_id).requests for k in p.keys) == 1


def test_stream_stopped_early_settles_the_lease() -> None:
    with pool(1) as p:
        stream = model(p).stream("a long story please, with many words in it")
        next(stream)
        stream.close()
        assert p.status("k0")["rpm_usage"] == 1  # reserved once, settled, nothing leaked


# -- no capacity ------------------------------------------------------------------------------


def test_exhausted_pool_with_max_wait_zero_fails_at_once() -> None:
    with pool(2, key_rpm=1) as p:
        llm = model(p, max_wait=0)
        llm.batch(["a", "b"])
        with pytest.raises(RotatingRateLimitError) as info:
            llm.invoke("c")
        err = info.value
        assert isinstance(err, AllKeysExhaustedError) and isinstance(err, ModelRateLimitError)
        assert err.retry_after is not None and err.retry_after > 0
        assert set(err.reasons) == {"k0", "k1"}
        assert sum(p.stats(k.key_id).requests for k in p.keys) == 2


def test_exhausted_pool_waits_for_capacity_within_max_wait() -> None:
    with pool(1, key_rpm=1, window_seconds=1.0) as p:
        llm = model(p, max_wait=10)
        llm.invoke("a")
        reply = llm.invoke("b")  # waits for the 1 s window to roll instead of failing
        assert reply.response_metadata["key_id"] == "k0"
        assert p.stats("k0").served == 2


async def test_exhausted_pool_async_wait_shorter_than_capacity_fails() -> None:
    async with apool(1, key_rpm=1, window_seconds=30.0) as p:
        llm = model(p, max_wait=0.05)
        await llm.ainvoke("a")
        with pytest.raises(RotatingRateLimitError) as info:
            await llm.ainvoke("b")
        assert info.value.retry_after is not None and info.value.retry_after > 0.05


def test_provider_429_on_every_attempt_raises_rate_limit_with_provider_delay() -> None:
    with pool(3) as p:
        for k in p.keys:  # the provider allows one request per key; our config says 100
            p.provider.set_limits(p.secret(k.key_id), rpm=1)
        llm = model(p, max_attempts=2, max_wait=0)
        llm.batch(["a", "b", "c"])
        with pytest.raises(RotatingRateLimitError) as info:
            llm.invoke("d")
        err = info.value
        assert isinstance(err, ModelRateLimitError)
        assert err.retry_after is not None and err.retry_after >= 1  # RetryInfo's delay
        assert sum(p.stats(k.key_id).rate_limited for k in p.keys) == 2


# -- per-call keywords ------------------------------------------------------------------


def test_call_keywords_reserve_and_wait_per_call() -> None:
    from rotating_llm import ConfigError
    from rotating_llm.events import add_listener, remove_listener

    seen: list[dict[str, object]] = []

    def listener(name: str, fields: dict[str, object]) -> None:
        if name == "lease.acquired":
            seen.append(fields)

    with pool(1, key_rpm=1) as p:
        llm = model(p, max_wait=30)
        add_listener(listener)
        try:
            llm.invoke("short", expected_completion_tokens=500)
        finally:
            remove_listener(listener)
        assert seen and int(str(seen[0]["estimated_tokens"])) >= 500  # reserved, not capped
        with pytest.raises(AllKeysExhaustedError):
            llm.invoke("again", max_wait=0)  # this call alone does not wait
        with pytest.raises(ConfigError, match="max_wait"):
            llm.invoke("bad", max_wait="soon")
        with pytest.raises(ConfigError, match="expected_completion_tokens"):
            llm.invoke("bad", expected_completion_tokens=-1)
