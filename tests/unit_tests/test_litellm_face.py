"""The LiteLLM face without a provider: classification, key mapping, the pick and the settle."""

from __future__ import annotations

import logging
import os
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm
from litellm import Router

from rotating_llm.keys.lease import FailureKind
from rotating_llm.keys.models import APIKey
from rotating_llm.litellm import (
    PLACEHOLDER_SECRET,
    TOKEN_FIELD,
    UNLIMITED,
    LeaseBook,
    PoolExhaustedError,
    PoolRequestTooLargeError,
    RotatingFilter,
    classify,
    deployment_key,
    estimate_tokens,
    install,
    key_id_for,
    retry_after_of,
    usage_tokens,
)
from rotating_llm.litellm._book import stamp

SECRET = f"sk-unit-{uuid.uuid4().hex}"

# LiteLLM's own types make pydantic warn once about a ReadOnly TypedDict item: not ours.
pytestmark = pytest.mark.filterwarnings("ignore:Item.*on TypedDict class.*ReadOnly:UserWarning")


def _response(
    status: int, headers: dict[str, str] | None = None, body: str = "{}"
) -> httpx.Response:
    request = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    return httpx.Response(status, headers=headers or {}, text=body, request=request)


# -- classification -------------------------------------------------------------------------


def test_a_429_is_a_rate_limit_with_the_providers_delay() -> None:
    exc = litellm.RateLimitError(
        "Rate limit reached for gpt on requests per min (RPM)",
        llm_provider="openai",
        model="gpt",
        response=_response(429, {"retry-after": "2", "retry-after-ms": "1500"}),
    )
    failure = classify(exc)
    assert failure.kind is FailureKind.RATE_LIMIT
    assert failure.retry_after == 1.5


def test_a_per_day_429_is_a_daily_quota() -> None:
    exc = litellm.RateLimitError(
        "Rate limit reached for gpt on requests per day (RPD)",
        llm_provider="openai",
        model="gpt",
        response=_response(429, {"retry-after": "30"}),
    )
    assert classify(exc).kind is FailureKind.DAILY_QUOTA


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (
            litellm.AuthenticationError("bad key", llm_provider="openai", model="m"),
            FailureKind.AUTH,
        ),
        (
            litellm.PermissionDeniedError(
                "suspended", llm_provider="openai", model="m", response=_response(403)
            ),
            FailureKind.AUTH,
        ),
        (
            litellm.BadRequestError(
                "API key not valid. Please pass a valid API key. API_KEY_INVALID",
                model="gemini",
                llm_provider="gemini",
            ),
            FailureKind.AUTH,
        ),
        (
            litellm.BadRequestError("context too long", model="m", llm_provider="openai"),
            FailureKind.INVALID_REQUEST,
        ),
        (
            litellm.ServiceUnavailableError("overloaded", llm_provider="openai", model="m"),
            FailureKind.SERVER,
        ),
        (
            litellm.InternalServerError("boom", llm_provider="openai", model="m"),
            FailureKind.SERVER,
        ),
        (litellm.Timeout("slow", model="m", llm_provider="openai"), FailureKind.TIMEOUT),
        (
            litellm.APIConnectionError("reset", llm_provider="openai", model="m"),
            FailureKind.SERVER,
        ),
        (ConnectionResetError("reset"), FailureKind.SERVER),
    ],
)
def test_failures_are_told_apart(exc: BaseException, kind: FailureKind) -> None:
    assert classify(exc).kind is kind


def test_retry_after_sources() -> None:
    in_seconds = litellm.RateLimitError(
        "x", llm_provider="openai", model="m", response=_response(429, {"Retry-After": "7"})
    )
    assert retry_after_of(in_seconds) == 7.0
    gemini = RuntimeError('{"error": {"details": [{"retryDelay": "12s"}]}}')
    assert retry_after_of(gemini) == 12.0
    openai_text = RuntimeError("Please try again in 450ms.")
    assert retry_after_of(openai_text) == 0.45
    assert retry_after_of(RuntimeError("no hint")) is None


def test_usage_tokens() -> None:
    resp = litellm.ModelResponse(
        usage={"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    )
    assert usage_tokens(resp) == 7
    assert usage_tokens(resp, "input") == 3
    assert usage_tokens({"usage": {"prompt_tokens": 2, "completion_tokens": 5}}) == 7
    assert usage_tokens(object()) is None


# -- deployments as keys ---------------------------------------------------------------------


def _dep(dep_id: str, **params: Any) -> dict[str, Any]:
    return {
        "model_name": "pool",
        "litellm_params": {"model": "openai/gpt", "api_key": SECRET, **params},
        "model_info": {"id": dep_id},
    }


def test_limits_come_from_litellm_params() -> None:
    key = deployment_key(_dep("d1", rpm=10, tpm=5000), "pool")
    assert (key.key_id, key.model_name, key.provider, key.rpm, key.tpm) == (
        "d1",
        "pool",
        "openai",
        10,
        5000,
    )
    assert SECRET not in repr(key)


def test_a_deployment_without_limits_is_unlimited() -> None:
    key = deployment_key(_dep("d2"), "pool")
    assert key.rpm == UNLIMITED
    assert key.tpm == UNLIMITED


def test_a_keys_file_entry_wins() -> None:
    entry = APIKey(key_id="d3", model_name="other", provider="openai", rpm=2, tpm=99, rpd=50)
    key = deployment_key(_dep("d3", rpm=10), "pool", {"d3": entry})
    assert (key.rpm, key.tpm, key.rpd, key.model_name) == (2, 99, 50, "pool")


def test_odd_deployment_ids_get_a_stable_key_id() -> None:
    odd = "my deployment #1"
    assert key_id_for(odd) == key_id_for(odd)
    assert key_id_for(odd).startswith("litellm-")
    assert key_id_for("abc-123") == "abc-123"


def test_estimate_counts_text_and_the_output_cap() -> None:
    messages = [{"role": "user", "content": "x" * 40}, {"role": "assistant", "content": "y" * 4}]
    base = estimate_tokens(messages)
    assert base >= 2 * 4 + 2  # per-message overhead plus some text
    assert estimate_tokens(messages, request_kwargs={"max_tokens": 100}) == base + 100
    assert estimate_tokens(None, input=["abcd", "efgh"]) >= 2
    assert estimate_tokens([]) == 1


# -- the book --------------------------------------------------------------------------------


class _FakeLease:
    def __init__(self, key_id: str) -> None:
        self.key_id = key_id
        self.settled = False


def test_a_retry_books_under_the_same_token_and_each_callback_finds_its_own() -> None:
    kwargs: dict[str, Any] = {"metadata": {"model_group": "pool"}}
    token = stamp(kwargs)
    assert stamp(kwargs) == token
    assert kwargs["metadata"][TOKEN_FIELD] == token
    book = LeaseBook()
    first, second = _FakeLease("a"), _FakeLease("b")
    book.add(token, first)  # type: ignore[arg-type]
    book.add(token, second)  # type: ignore[arg-type]
    assert book.take(token, "b") is second
    assert book.take(token, "b") is None
    assert book.take(token, None) is first
    assert len(book) == 0


def test_unsettled_leases_are_forgotten_after_the_ttl() -> None:
    book = LeaseBook(ttl=0.0)
    book.add("t1", _FakeLease("a"))  # type: ignore[arg-type]
    book.add("t2", _FakeLease("a"))  # type: ignore[arg-type]  # purges t1
    assert book.expired == 1
    assert book.take("t1", None) is None


# -- install and the pick, in process (no provider call) -------------------------------------


@pytest.fixture
def router() -> Router:
    deps = [_dep(f"d{i}", rpm=2) for i in range(2)]
    return Router(model_list=deps, num_retries=0)


@pytest.fixture
def installed(router: Router, redis_url: str, prefix: str) -> Iterator[Any]:
    inst = install(router, redis_url=redis_url, key_prefix=prefix, window_seconds=30, max_wait=0)
    yield inst
    inst.close()


@pytest.mark.redis
def test_install_registers_without_deprecation_warnings(
    router: Router, redis_url: str, prefix: str
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        inst = install(router, redis_url=redis_url, key_prefix=prefix, window_seconds=30)
    try:
        assert inst.settler in litellm.callbacks
        assert sorted(k.key_id for k in inst.manager.keys) == ["d0", "d1"]
    finally:
        inst.close()
    assert inst.settler not in litellm.callbacks


@pytest.mark.redis
def test_install_falls_back_to_set_custom_routing_strategy(redis_url: str, prefix: str) -> None:
    class OldRouter:
        def __init__(self) -> None:
            self.strategy: Any = None

        def get_model_list(self, model_name: str | None = None) -> list[dict[str, Any]]:
            return [_dep("old", rpm=1)]

        def set_custom_routing_strategy(self, strategy: Any) -> None:
            self.strategy = strategy

    old = OldRouter()
    inst = install(old, redis_url=redis_url, key_prefix=prefix, window_seconds=30)
    try:
        assert old.strategy is inst
        picked = inst.get_available_deployment("pool", request_kwargs={})
        assert picked["model_info"]["id"] == "old"
    finally:
        inst.close()


@pytest.mark.redis
def test_picks_reserve_until_the_pool_is_full_and_callbacks_settle(installed: Any) -> None:
    picked = []
    for _ in range(4):
        kwargs: dict[str, Any] = {"metadata": {}}
        dep = installed.get_available_deployment(
            "pool", [{"role": "user", "content": "hi"}], request_kwargs=kwargs
        )
        picked.append(dep["model_info"]["id"])
        assert kwargs["metadata"][TOKEN_FIELD]
        done = {
            "litellm_params": {"metadata": {**kwargs["metadata"], "model_info": dep["model_info"]}}
        }
        usage = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
        installed.settler.log_success_event(done, litellm.ModelResponse(usage=usage), None, None)
    assert sorted(picked) == ["d0", "d0", "d1", "d1"]
    with pytest.raises(PoolExhaustedError) as info:
        installed.get_available_deployment("pool", request_kwargs={})
    assert isinstance(info.value, litellm.RateLimitError)
    assert info.value.retry_after is not None
    assert set(info.value.reasons) == {"d0", "d1"}
    assert installed.settler.settled == {"complete": 4}
    assert installed.settler.pending == 0
    statuses = {s["key_id"]: s for s in installed.manager.get_all_key_statuses()}
    assert statuses["d0"]["tpm_usage"] == 6  # corrected to the reported usage


@pytest.mark.redis
async def test_async_pick_and_failure_callback(installed: Any) -> None:
    kwargs: dict[str, Any] = {}
    dep = await installed.async_get_available_deployment("pool", request_kwargs=kwargs)
    err = litellm.RateLimitError(
        "slow down", llm_provider="openai", model="m", response=_response(429, {"retry-after": "9"})
    )
    event = {
        "litellm_params": {"metadata": {**kwargs["metadata"], "model_info": dep["model_info"]}},
        "exception": err,
    }
    await installed.settler.async_log_failure_event(event, None, None, None)
    assert installed.settler.settled == {"fail:rate_limit": 1}
    status = installed.manager.get_key_status(dep["model_info"]["id"])
    assert status["in_cooldown"] is True
    assert 8 < status["cooldown_remaining"] <= 9
    other = await installed.async_get_available_deployment("pool", request_kwargs={})
    assert other["model_info"]["id"] != dep["model_info"]["id"]
    await installed.manager.aclose()


@pytest.mark.redis
def test_litellm_cooldowns_are_respected(installed: Any, router: Router) -> None:
    cooldowns = router.health().cooldowns
    cooldowns.add_deployment_to_cooldown("d0", RuntimeError("x"), 500, 30)
    picks = {
        installed.get_available_deployment("pool", request_kwargs={})["model_info"]["id"]
        for _ in range(2)
    }
    assert picks == {"d1"}


@pytest.mark.redis
def test_a_request_larger_than_every_tpm_fails_at_once(
    router: Router, redis_url: str, prefix: str
) -> None:
    inst = install(router, redis_url=redis_url, key_prefix=prefix, estimator=lambda m, i, k: 10**12)
    try:
        with pytest.raises(PoolRequestTooLargeError):
            inst.get_available_deployment("pool", request_kwargs={})
    finally:
        inst.close()


@pytest.mark.redis
def test_no_secret_in_reprs_leases_or_errors(installed: Any) -> None:
    lease = installed.manager.acquire("pool", 1)
    assert lease.api_key.get_secret_value() == PLACEHOLDER_SECRET
    lease.release()
    for _ in range(4):
        installed.get_available_deployment("pool", request_kwargs={})
    with pytest.raises(PoolExhaustedError) as info:
        installed.get_available_deployment("pool", request_kwargs={})
    for text in (
        repr(installed),
        repr(installed.settler),
        repr(installed.manager),
        str(info.value),
    ):
        assert SECRET not in text


# -- the proxy's callback ----------------------------------------------------------------------


@pytest.mark.redis
async def test_the_filter_narrows_to_one_reserved_deployment(redis_url: str, prefix: str) -> None:
    flt = RotatingFilter(redis_url=redis_url, key_prefix=prefix, window_seconds=30, max_wait=0)
    deps = [_dep(f"d{i}", rpm=2) for i in range(2)]
    only_d1 = deps[1:]  # d0 filtered out before us, e.g. by LiteLLM's cooldown
    try:
        picked = []
        for healthy in (only_d1, only_d1, deps, deps):
            kwargs: dict[str, Any] = {"metadata": {}}
            kept = await flt.async_filter_deployments("pool", healthy, None, request_kwargs=kwargs)
            assert len(kept) == 1
            picked.append(kept[0]["model_info"]["id"])
            event = {
                "litellm_params": {
                    "metadata": {**kwargs["metadata"], "model_info": kept[0]["model_info"]}
                }
            }
            await flt.async_log_success_event(event, None, None, None)
        assert picked == ["d1", "d1", "d0", "d0"]
        with pytest.raises(PoolExhaustedError) as info:
            await flt.async_filter_deployments("pool", deps, None, request_kwargs={})
        assert set(info.value.reasons) == {"d0", "d1"}
        assert flt.settled == {"complete": 4}
        assert flt.pending == 0
        assert SECRET not in repr(flt)
    finally:
        await flt.aclose()


@pytest.mark.redis
async def test_a_filter_of_some_model_groups_leaves_the_others_untouched(
    redis_url: str, prefix: str
) -> None:
    flt = RotatingFilter(redis_url=redis_url, key_prefix=prefix, max_wait=0, model_groups=["pool"])
    other = [{**_dep(f"o{i}", rpm=1), "model_name": "other"} for i in range(2)]
    try:
        for _ in range(3):  # never reserved: rpm 1 would refuse the second
            kwargs: dict[str, Any] = {"metadata": {}}
            kept = await flt.async_filter_deployments("other", other, None, request_kwargs=kwargs)
            assert kept is other and TOKEN_FIELD not in kwargs["metadata"]
        kept = await flt.async_filter_deployments("pool", [_dep("d0", rpm=1)], None, {})
        assert [d["model_info"]["id"] for d in kept] == ["d0"]
        assert flt.manager.models() == ["pool"]
    finally:
        await flt.aclose()
    from rotating_llm import ConfigError

    # LiteLLM lists a callback once per class and public scalar attributes: a second
    # filter (only a float setting differs) must still get its own success events
    other_flt = RotatingFilter(redis_url=redis_url, key_prefix=prefix, window_seconds=4.0)
    listed: list[Any] = []
    for f in (flt, other_flt):
        litellm.logging_callback_manager._add_custom_logger_to_list(f, listed)
    assert listed == [flt, other_flt]
    await other_flt.aclose()
    with pytest.raises(ConfigError, match="model_groups"):
        RotatingFilter(redis_url=redis_url, key_prefix=prefix, model_groups="pool")


@pytest.mark.redis
def test_deployments_changed_at_run_time_are_picked_up(redis_url: str, prefix: str) -> None:
    class ChangingRouter:
        def __init__(self) -> None:
            self.deps = [_dep("a", rpm=1)]

        def get_model_list(self, model_name: str | None = None) -> list[dict[str, Any]]:
            return self.deps

        def set_custom_routing_strategy(self, strategy: Any) -> None:
            self.strategy = strategy

    router = ChangingRouter()
    inst = install(router, redis_url=redis_url, key_prefix=prefix, window_seconds=30, max_wait=0)
    try:
        assert inst.get_available_deployment("pool", request_kwargs={})["model_info"]["id"] == "a"
        with pytest.raises(PoolExhaustedError):
            inst.get_available_deployment("pool", request_kwargs={})
        router.deps = [_dep("a", rpm=2), _dep("b", rpm=1)]  # a raised, b added
        picks = sorted(
            inst.get_available_deployment("pool", request_kwargs={})["model_info"]["id"]
            for _ in range(2)
        )
        assert picks == ["a", "b"]
        assert {k.key_id: k.rpm for k in inst.manager.keys} == {"a": 2, "b": 1}
        router.deps = [_dep("b", rpm=1)]  # a removed
        assert [k.key_id for k in inst.manager.keys] == ["a", "b"]
        with pytest.raises(PoolExhaustedError):
            inst.get_available_deployment("pool", request_kwargs={})
        assert [k.key_id for k in inst.manager.keys] == ["b"]
    finally:
        inst.close()


@pytest.mark.redis
def test_a_specific_deployment_is_reserved_on_itself_only(installed: Any) -> None:
    for _ in range(2):
        dep = installed.get_available_deployment("d1", specific_deployment=True, request_kwargs={})
        assert dep["model_info"]["id"] == "d1"
    with pytest.raises(PoolExhaustedError) as info:
        installed.get_available_deployment("d1", specific_deployment=True, request_kwargs={})
    assert info.value.reasons["d1"] == "rpm"
    assert installed.get_available_deployment("pool", request_kwargs={})["model_info"]["id"] == "d0"


@pytest.mark.parametrize(
    ("request_kwargs", "want"),
    [
        ({"priority": 5000}, -1000),  # LiteLLM's own (lower first), clipped then mapped
        ({"priority": -5000}, 1000),
        ({"priority": "12"}, -12),
        ({"priority": "soon"}, 0),
        ({"priority": 3, "metadata": {"priority": "bad"}}, -3),  # a bad one is as if absent
        ({"priority": 3, "metadata": {"priority": "1" * 5000}}, -3),  # not parsed at all
        ({"priority": 3, "litellm_metadata": {"priority": 4}}, 4),
    ],
)
def test_who_reads_priorities_leniently(request_kwargs: dict[str, Any], want: int) -> None:
    from rotating_llm.litellm._who import who

    assert who(request_kwargs, sticky=False).priority == want


def test_who_never_logs_a_rejected_value(caplog: pytest.LogCaptureFixture) -> None:
    from rotating_llm.litellm._who import who

    with caplog.at_level(logging.DEBUG, logger="rotating_llm.litellm"):
        found = who({"user": ["s3cr3t-user"], "metadata": {"priority": "s3cr3t-prio"}}, False)
    assert (found.priority, found.tenant) == (0, None)
    assert len(caplog.records) == 2
    assert "s3cr3t" not in caplog.text


def test_a_queued_refusal_carries_its_place_and_a_retry_after_no_sooner_than_its_wait() -> None:
    from rotating_llm.errors import AllKeysExhaustedError

    core = AllKeysExhaustedError("pool", 1.2, {"d0": "rpm"}, queue_position=3, expected_wait=7.25)
    exc = PoolExhaustedError(core)
    assert isinstance(exc, litellm.RateLimitError)
    assert (exc.queue_position, exc.expected_wait, exc.retry_after) == (3, 7.25, 1.2)
    assert "3 ahead in the queue, expected wait 7.250s" in str(exc)
    headers = exc.headers or {}
    assert headers["retry-after"] == "8"  # the later of 1.2 and 7.25, whole seconds up
    assert headers["x-rotating-llm-queue-position"] == "3"
    assert headers["x-rotating-llm-expected-wait"] == "7.250"
    # the head of the queue: its wait is when capacity returns
    head = PoolExhaustedError(AllKeysExhaustedError("pool", 2.5, {}, queue_position=0,
                                                    expected_wait=2.5))  # fmt: skip
    assert (head.headers or {})["retry-after"] == "3"
    # not queued: no queue headers, Retry-After from retry_after alone (at least 1)
    plain = PoolExhaustedError(AllKeysExhaustedError("pool", 0.2, {}))
    assert plain.queue_position is None and plain.expected_wait is None
    assert (plain.headers or {})["retry-after"] == "1"
    assert "x-rotating-llm-queue-position" not in (plain.headers or {})
    assert PoolExhaustedError(AllKeysExhaustedError("pool", None, {})).headers is None  # never
