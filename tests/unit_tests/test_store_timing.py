"""Slow or lost, decided without a network: the probe's answers, the deadlines, the settings."""

from __future__ import annotations

import time

import pytest
import redis.exceptions as rex

from rotating_llm import ConfigError, Settings
from rotating_llm.storage import call_deadline
from rotating_llm.storage._timing import (
    MIN_LEFT,
    Liveness,
    Timing,
    deadline_of,
    piece_of,
    probe_budget,
    timing_of,
)


def _probe(error: type[Exception] | None):  # type: ignore[no-untyped-def]
    calls: list[float] = []

    def probe(timeout: float) -> None:
        calls.append(timeout)
        if error is not None:
            raise error("probe")

    return probe, calls


def test_a_probe_that_answers_means_slow_not_lost() -> None:
    probe, calls = _probe(None)
    live = Liveness(probe, Timing(lost_after=0.0001))
    time.sleep(0.01)
    assert live.is_lost() is False
    assert calls  # it did ask


def test_a_refused_probe_means_lost_now() -> None:
    probe, _ = _probe(rex.ConnectionError)
    live = Liveness(probe, Timing(lost_after=60))
    assert live.is_lost() is True
    assert live.lost_reason() == "connection refused"
    live.answered()  # a reply anywhere clears it
    assert Liveness(_probe(None)[0], Timing()).is_lost() is False


def test_a_silent_probe_means_lost_only_after_lost_after() -> None:
    probe, _ = _probe(rex.TimeoutError)
    live = Liveness(probe, Timing(lost_after=0.4))  # piece 0.1
    assert live.is_lost() is False  # silent for one piece only
    time.sleep(0.35)
    assert live.is_lost() is True
    assert "no answer to a probe for 0.4s" in live.lost_reason()
    live.answered()
    assert live.is_lost() is False  # silence starts over


def test_the_probe_waits_at_most_the_budget() -> None:
    probe, calls = _probe(rex.TimeoutError)
    Liveness(probe, Timing(lost_after=30)).is_lost(budget=0.2)
    assert calls == [0.2]


def test_no_probe_is_sent_with_almost_no_time_left() -> None:
    """A probe never waits past what is left: under ``MIN_PROBE`` none is sent (the
    silence so far decides)."""
    probe, calls = _probe(rex.TimeoutError)
    live = Liveness(probe, Timing(lost_after=30))
    assert live.is_lost(budget=0.005) is False
    assert live.is_lost(budget=0.0) is False
    assert calls == []
    live = Liveness(probe, Timing(lost_after=0.001))
    live.is_lost(budget=0.0)  # the silence starts
    time.sleep(0.01)
    assert live.is_lost(budget=0.005) is True  # silent past lost_after, no probe needed
    assert calls == []


def test_the_probe_budget_keeps_time_for_a_failover() -> None:
    assert probe_budget(10.0, 10.0 - MIN_LEFT / 2) is None  # only waiting is left
    assert probe_budget(10.0, 11.0) is None
    assert probe_budget(10.0, 9.0) == pytest.approx(1.0 - MIN_LEFT)


def test_deadlines_come_from_the_caller_else_the_default_budget() -> None:
    timing = Timing(default_budget=7.0)
    before = time.monotonic()
    assert before + 7.0 <= deadline_of(timing) <= time.monotonic() + 7.0
    with call_deadline(123.0):
        assert deadline_of(timing) == 123.0
        assert piece_of(timing, 123.0, 122.95) == pytest.approx(0.05)
    assert deadline_of(timing) != 123.0


def test_settings_give_the_store_its_timing() -> None:
    s = Settings(max_wait=4, store_deadline=0.5, store_lost_after=2)
    timing = timing_of(s)
    assert (timing.deadline, timing.lost_after, timing.default_budget) == (0.5, 2, 4.5)
    assert timing.piece == 0.25
    env = Settings.from_env({"ROTATING_LLM_REDIS_LOST_SECONDS": "5"})
    assert env.store_lost_after == 5 and env.store_deadline == 1.0


@pytest.mark.parametrize(
    "var", ["ROTATING_LLM_REDIS_DEADLINE_SECONDS", "ROTATING_LLM_REDIS_LOST_SECONDS"]
)
@pytest.mark.parametrize("value", ["0", "-1", "nan", "99999"])
def test_bad_store_times_name_their_variable(var: str, value: str) -> None:
    with pytest.raises(ConfigError, match=var):
        Settings.from_env({var: value})
