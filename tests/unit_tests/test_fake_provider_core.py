"""Unit tests of the simulator's pure parts: windows, faults, tokens, replies, arguments."""

from __future__ import annotations

import pytest

from rotating_llm.testing import CHARS_PER_TOKEN, FakeProvider, Fault, Limits, count_tokens
from rotating_llm.testing import fingerprint as fp_of
from rotating_llm.testing._faults import FaultBook
from rotating_llm.testing._limits import Windows
from rotating_llm.testing._reply import Hints, Plan, choose_tool, split_chunks, value_for_schema
from rotating_llm.testing._state import State


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- windows -----------------------------------------------------------------


def test_rpm_window_is_sliding_not_bucketed() -> None:
    w = Windows(window=60.0, day_window=86_400.0)
    limits = Limits(rpm=2)
    assert w.admit("k", 0.0, 1, limits) is None
    assert w.admit("k", 59.0, 1, limits) is None
    refused = w.admit("k", 59.5, 1, limits)
    assert refused is not None
    assert refused.kind == "rpm"
    assert refused.retry_after == pytest.approx(0.5)  # the request at 0.0 leaves at 60.0
    assert w.admit("k", 60.0, 1, limits) is None
    assert w.admit("k", 118.9, 1, limits) is not None  # 59.0 and 60.0 are still inside
    assert w.admit("k", 119.0, 1, limits) is None


def test_no_sixty_second_interval_ever_holds_more_than_rpm() -> None:
    w = Windows(window=60.0, day_window=86_400.0)
    limits = Limits(rpm=5)
    admitted = [t / 4 for t in range(0, 4 * 300) if w.admit("k", t / 4, 0, limits) is None]
    for i, start in enumerate(admitted):
        inside = [t for t in admitted[i:] if t < start + 60.0]
        assert len(inside) <= 5


def test_tpm_counts_tokens_and_says_when_enough_have_left() -> None:
    w = Windows(window=10.0, day_window=86_400.0)
    limits = Limits(tpm=100)
    assert w.admit("k", 0.0, 60, limits) is None
    assert w.admit("k", 1.0, 30, limits) is None
    refused = w.admit("k", 2.0, 50, limits)
    assert refused is not None
    assert refused.kind == "tpm"
    assert refused.retry_after == pytest.approx(8.0)  # the 60 tokens leave at 10.0
    too_big = w.admit("k", 2.0, 101, limits)
    assert too_big is not None
    assert too_big.retry_after == pytest.approx(10.0)
    assert w.usage("k", 2.0) == {
        "minute_requests": 2,
        "minute_tokens": 90,
        "day_requests": 2,
        "day_tokens": 90,
    }


def test_rpd_is_reported_before_rpm_and_refusals_consume_nothing() -> None:
    w = Windows(window=1.0, day_window=100.0)
    limits = Limits(rpm=1, rpd=2)
    assert w.admit("k", 0.0, 0, limits) is None
    assert w.admit("k", 0.5, 0, limits) is not None  # rpm
    assert w.admit("k", 1.5, 0, limits) is None
    refused = w.admit("k", 3.0, 0, limits)
    assert refused is not None
    assert refused.per_day
    assert refused.retry_after == pytest.approx(97.0)
    assert w.usage("k", 3.0)["day_requests"] == 2


def test_keys_have_independent_windows() -> None:
    w = Windows(window=60.0, day_window=86_400.0)
    limits = Limits(rpm=1)
    assert w.admit("a", 0.0, 0, limits) is None
    assert w.admit("b", 0.0, 0, limits) is None
    assert w.admit("a", 1.0, 0, limits) is not None


def test_state_per_key_overrides_and_tpm_counts_total() -> None:
    clock = Clock()
    state = State(Limits(rpm=1), window=60.0, tpm_counts="total", clock=clock)
    state.set_limits("vip", rpm=3, tpm=20)
    assert state.limits_for("vip") == Limits(rpm=3, tpm=20)
    assert state.limits_for("other") == Limits(rpm=1)
    assert state.admit("vip", 5, 5).rejection is None
    assert state.admit("vip", 5, 5).rejection is None
    refused = state.admit("vip", 1, 0).rejection
    assert refused is not None
    assert refused.kind == "tpm"
    state.clear_limits("vip")
    assert state.limits_for("vip") == Limits(rpm=1)
    assert state.key_stats("vip")["input_tokens"] == 10
    assert state.key_stats("vip")["rate_limited"] == 1


# -- faults --------------------------------------------------------------------


def test_scripted_faults_apply_to_the_next_n_matching_requests_only() -> None:
    book = FaultBook()
    book.add("overloaded", key="a", times=2)
    assert book.pick("b") is None
    first, second = book.pick("a"), book.pick("a")
    assert first is not None
    assert second is not None
    assert first.fault is Fault.OVERLOADED
    assert book.pick("a") is None
    assert book.rules() == []


def test_probability_faults_are_reproducible_with_a_seed() -> None:
    def hits(seed: int) -> list[bool]:
        book = FaultBook()
        book.add(Fault.SERVER_ERROR, probability=0.3, seed=seed)
        return [book.pick("k") is not None for _ in range(200)]

    assert hits(7) == hits(7)
    assert hits(7) != hits(8)
    assert 30 < sum(hits(7)) < 90


def test_rules_are_checked_in_order_and_can_be_removed() -> None:
    book = FaultBook()
    first = book.add("reset")
    book.add("overloaded")
    picked = book.pick("k")
    assert picked is not None
    assert picked.fault is Fault.RESET
    assert book.remove(first.id)
    assert not book.remove(first.id)
    picked = book.pick("k")
    assert picked is not None
    assert picked.fault is Fault.OVERLOADED
    book.clear()
    assert book.pick("k") is None


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"fault": "nope"}, "fault"),
        ({"fault": "reset", "times": 0}, "times"),
        ({"fault": "reset", "probability": 1.5}, "probability"),
        ({"fault": "latency"}, "delay"),
        ({"fault": "hang", "delay": -1}, "delay"),
        ({"fault": "stream_cut", "after_chunks": -1}, "after_chunks"),
        ({"fault": "reset", "key": ""}, "key"),
    ],
)
def test_bad_fault_arguments_name_the_argument(kwargs: dict[str, object], name: str) -> None:
    book = FaultBook()
    with pytest.raises(ValueError, match=name):
        book.add(**kwargs)  # type: ignore[arg-type]


# -- constructor validation ------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"rpm": 0}, "rpm"),
        ({"tpm": -5}, "tpm"),
        ({"rpd": 1.5}, "rpd"),
        ({"rpm": True}, "rpm"),
        ({"window": 0}, "window"),
        ({"day_window": float("inf")}, "day_window"),
        ({"keys": "one-key"}, "keys"),
        ({"keys": ["ok", ""]}, "keys"),
        ({"tpm_counts": "output"}, "tpm_counts"),
        ({"port": 70000}, "port"),
        ({"host": ""}, "host"),
    ],
)
def test_bad_constructor_arguments_raise_value_error_naming_them(
    kwargs: dict[str, object], name: str
) -> None:
    with pytest.raises(ValueError, match=name):
        FakeProvider(**kwargs)  # type: ignore[arg-type]


def test_a_stopped_provider_says_so() -> None:
    provider = FakeProvider(rpm=1)
    assert not provider.running
    assert "stopped" in repr(provider)
    with pytest.raises(RuntimeError, match="start"):
        _ = provider.url
    with pytest.raises(RuntimeError, match="start"):
        provider.stats()


# -- keys, tokens, replies -------------------------------------------------------


def test_fingerprints_never_contain_the_key_and_are_stable() -> None:
    key = "AIzaSyD-very-secret-key-1234567890"
    shown = fp_of(key)
    assert shown == fp_of(key)
    assert shown.startswith("AIza…")
    assert key[4:] not in shown
    assert key[-4:] not in shown
    assert fp_of("short") != fp_of("shorT")
    assert "short" not in fp_of("short")


def test_token_count_is_four_characters_per_token_rounded_up() -> None:
    assert CHARS_PER_TOKEN == 4
    assert count_tokens("") == 0
    assert count_tokens("abcd") == 1
    assert count_tokens("abcde") == 2
    assert count_tokens("x" * 400) == 100


def test_plan_applies_stop_sequences_and_max_tokens() -> None:
    plan = Plan(model="m", stream=False, input_tokens=0, text="Hello you there", stop=["you"])
    assert plan.text == "Hello "
    assert plan.input_tokens == 1  # never zero
    short = Plan(model="m", stream=False, input_tokens=3, text="x" * 40, max_tokens=2)
    assert short.text == "x" * 8
    assert short.finish == "length"
    assert short.output_tokens == 2


def test_stream_chunks_rebuild_the_text() -> None:
    text = "You said: Hello  big world "
    chunks = split_chunks(text)
    assert "".join(chunks) == text
    assert len(chunks) == 5
    assert split_chunks("") == [""]


def test_generated_arguments_follow_the_schema_and_the_prompt() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "integer"},
            "b": {"type": "INTEGER"},
            "name": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["x", "y"]}},
            "maybe": {"anyOf": [{"type": "null"}, {"type": "number"}]},
            "ref": {"$ref": "#/$defs/Inner"},
            "flag": {"type": "boolean"},
        },
        "$defs": {"Inner": {"type": "object", "properties": {"n": {"type": "integer"}}}},
    }
    value = value_for_schema(schema, Hints("What is 3 + 4 for 'Acme 你好'?"))
    assert value == {
        "a": 3,
        "b": 4,
        "name": "Acme 你好",
        "tags": ["x"],
        "maybe": 3.0,
        "ref": {"n": 4},
        "flag": True,
    }


def test_the_tool_named_in_the_prompt_wins() -> None:
    names = ["get_weather", "magic_function", "magic_function_no_args"]
    assert choose_tool(names, "call magic_function_no_args()") == "magic_function_no_args"
    assert choose_tool(names, "call magic_function(3)") == "magic_function"
    assert choose_tool(names, "Hello!") == "get_weather"


def test_rpd_can_reset_at_midnight_in_a_time_zone() -> None:
    import datetime as dt
    import zoneinfo

    pacific = zoneinfo.ZoneInfo("America/Los_Angeles")
    wall = Clock()
    wall.now = dt.datetime(2026, 3, 1, 23, 59, 0, tzinfo=pacific).timestamp()
    w = Windows(window=60.0, day_window=86_400.0, day_reset=pacific, wall=wall)
    limits = Limits(rpd=2)
    assert w.admit("k", 0.0, 0, limits) is None
    assert w.admit("k", 100.0, 0, limits) is None
    refused = w.admit("k", 200.0, 0, limits)
    assert refused is not None
    assert refused.per_day
    assert refused.retry_after == pytest.approx(60.0)  # one minute to Pacific midnight
    wall.now += 61.0
    assert w.admit("k", 300.0, 0, limits) is None
    assert w.usage("k", 300.0)["day_requests"] == 1


def test_day_reset_must_be_a_time_zone() -> None:
    with pytest.raises(ValueError, match="day_reset"):
        FakeProvider(day_reset="Mars/Olympus_Mons")
    FakeProvider(day_reset="America/Los_Angeles")  # valid, not started


def test_fault_descriptions_never_show_the_key() -> None:
    state = State(Limits())
    rule_id = state.inject("latency", key="sk-secret-key-123456789", delay=0.5, times=2)
    [described] = state.faults()
    assert described["id"] == rule_id
    assert described["fault"] == "latency"
    assert described["key"] == fp_of("sk-secret-key-123456789")
    assert described["times"] == 2
    assert state.remove_fault(rule_id)
    assert state.faults() == []


@pytest.mark.parametrize("name", ["rpm", "tpm", "rpd"])
def test_bad_per_key_limits_name_the_argument(name: str) -> None:
    state = State(Limits())
    with pytest.raises(ValueError, match=name):
        state.set_limits("k", **{name: 0})
    with pytest.raises(ValueError, match="key"):
        state.set_limits("", rpm=1)


# -- tokens per day, projects, OpenAI durations -------------------------------------


def test_tpd_is_a_sliding_day_of_tokens_checked_before_the_minute() -> None:
    w = Windows(window=1.0, day_window=100.0)
    limits = Limits(tpm=50, tpd=60)
    assert w.admit("k", 0.0, 40, limits) is None
    refused = w.admit("k", 2.0, 30, limits)  # the minute is empty again, the day is not
    assert refused is not None
    assert (refused.kind, refused.limit, refused.used, refused.requested) == ("tpd", 60, 40, 30)
    assert refused.per_day
    assert refused.retry_after == pytest.approx(98.0)
    assert w.admit("k", 100.0, 30, limits) is None


def test_projects_share_windows_and_true_limits_are_per_key() -> None:
    clock = Clock()
    state = State(
        Limits(rpm=1),
        projects={"p": ["a", "b"]},
        project_limits=Limits(rpm=2),
        true_limits={"a": {"tpm": 5}},
        clock=clock,
    )
    assert state.limits_for("a") == Limits(rpm=2)
    assert state.limits_for("alone") == Limits(rpm=1)
    key_refusal = state.admit("a", 6, 0).rejection
    assert key_refusal is not None
    assert (key_refusal.scope, key_refusal.kind) == ("key", "tpm")
    assert state.admit("a", 1, 0).rejection is None
    assert state.admit("b", 1, 0).rejection is None
    shared = state.admit("b", 1, 0)
    assert shared.rejection is not None
    assert (shared.rejection.scope, shared.rejection.kind) == ("project", "rpm")
    assert (shared.requests.limit, shared.requests.remaining) == (2, 0)
    assert shared.tokens.limit is None  # b has no token limit
    requests, tokens = state.quota_view("a")
    assert (requests.limit, requests.remaining) == (2, 0)  # the project's, shared with b
    assert (tokens.limit, tokens.remaining) == (5, 4)  # a's own, after its 1 token
    assert state.project_usage("p")["minute_requests"] == 2
    with pytest.raises(ValueError, match="in project 'p'"):
        state.set_limits("a", rpm=5)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0s"),
        (-1.0, "0s"),
        (0.0004, "1ms"),
        (0.02, "20ms"),
        (0.999, "999ms"),
        (1.0, "1s"),
        (1.5, "1.5s"),
        (59.9985, "59.999s"),
        (59.9994, "1m0s"),  # rounded up to the millisecond
        (360.0, "6m0s"),
        (61.25, "1m1.25s"),
        (3723.25, "1h2m3.25s"),
    ],
)
def test_openai_reset_durations_are_go_durations(seconds: float, text: str) -> None:
    from rotating_llm.testing._openai import format_duration

    assert format_duration(seconds) == text
