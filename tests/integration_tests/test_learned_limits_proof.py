"""Proofs of the limits learned from the provider (#12): four processes calling
``RotatingChatModel`` against the simulator on a real Redis, with a short window.

- a key whose true limit is below the file's: at most one provider 429 per key and
  process in the first window, none after (Gemini: successes carry no limit);
- OpenAI: the headers of the first answer teach the limit: no 429 after it;
- another app spends a key's quota (``fp.spend``): no 429 after the first answer;
- three keys in one project with a project RPM of 4: with ``quota_groups`` exactly 4
  served per window and no 429; without, at most one 429 per key and process in the
  first window and none after.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import uuid
from collections import Counter
from typing import Any

import pytest
from _learn_workers import build, warm_up, work

from rotating_llm.testing import FakeProvider

pytestmark = [pytest.mark.multiprocess, pytest.mark.slow]

WINDOW = 2.0
PROCS = 4
Settled = list[tuple[float, str, str]]


def spec(
    fp: FakeProvider, kind: str, n: int, rpm: int, secrets: list[str], **extra: Any
) -> dict[str, Any]:
    url, model = (fp.url, "gemini-2.5-flash") if kind == "gemini" else (fp.openai_url, "gpt-x")
    keys = [
        {"key_id": f"k{i}", "model_name": model, "provider": kind, "rpm": rpm,
         "tpm": 1_000_000, "base_url": url, **extra}
        for i in range(n)
    ]  # fmt: skip
    return {
        "keys": keys,
        "secrets": {f"API_KEY_K{i}": s for i, s in enumerate(secrets)},
        "redis_url": os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0",
        "prefix": f"t{uuid.uuid4().hex[:10]}:",
        "window": WINDOW,
        "model": model,
    }


def secrets(n: int) -> list[str]:
    return [f"sk-learn-{i}-{uuid.uuid4().hex}" for i in range(n)]


def drive(sp: dict[str, Any], seconds: float, procs: int = PROCS) -> tuple[float, Settled]:
    """Run ``procs`` workers for ``seconds``; their start and every lease they settled."""
    ctx = multiprocessing.get_context("spawn")
    ready, out = ctx.Barrier(procs + 1), ctx.Queue()
    workers = [ctx.Process(target=work, args=(sp, ready, seconds, out)) for _ in range(procs)]
    for w in workers:
        w.start()
    ready.wait(timeout=120)  # every worker built its manager and model
    start = time.time()
    results = [out.get(timeout=seconds + 120) for _ in workers]
    for w in workers:
        w.join(timeout=30)
    per_proc = [[(t, k, o + f"@{p}") for t, k, o in r] for p, r in enumerate(results)]
    return start, [e for r in per_proc for e in r]


def limited(settled: Settled) -> list[tuple[float, str, str]]:
    return [e for e in settled if e[2].startswith("fail:rate_limit") or "daily" in e[2]]


def served(settled: Settled) -> list[float]:
    """When each served lease was settled."""
    return sorted(t for t, _, o in settled if o.startswith("complete"))


def first_contact(settled: Settled) -> float:
    return min(t for t, _, _ in settled)


def test_gemini_a_true_limit_below_the_file_s_trips_once_per_key_and_process() -> None:
    s = secrets(3)
    true = {s[0]: {"rpm": 2}, s[1]: {"rpm": 3}}
    with FakeProvider(rpm=100, window=WINDOW, true_limits=true, process=True) as fp:
        sp = spec(fp, "gemini", 3, 6, s)
        _, settled = drive(sp, WINDOW * 4)
        first = first_contact(settled)
        trips = limited(settled)
        # at most one per key and process, all in the first window
        per = Counter((k, o.split("@")[1]) for _, k, o in trips)
        assert all(n == 1 for n in per.values()), per
        assert all(t < first + WINDOW for t, _, _ in trips), (first, trips)
        assert {k for _, k, _ in trips} <= {"k0", "k1"}
        assert fp.key_stats(s[0]).rate_limited == len([1 for _, k, _ in trips if k == "k0"])
        km = build(sp)
        assert km.get_key_status("k0")["rpm_limit"] == 2
        assert km.get_key_status("k1")["rpm_limit"] == 3
        assert km.get_key_status("k2")["limits"]["rpm"]["source"] == "file"
        km.close()
        assert len(served(settled)) >= 3 * (2 + 3 + 6)  # the learned limits are used


def test_openai_headers_on_success_teach_the_limit_before_any_429() -> None:
    s = secrets(2)
    with FakeProvider(rpm=100, window=WINDOW, true_limits={s[0]: {"rpm": 2}}, process=True) as fp:
        sp = spec(fp, "openai", 2, 6, s)
        km = build(sp)
        from rotating_llm.langchain import RotatingChatModel

        llm = RotatingChatModel(model=sp["model"], key_manager=km)
        for _ in range(2):  # the first answers (one per key)
            llm.invoke("hi")
        status = km.get_key_status("k0")
        assert status["rpm_limit"] == 2
        assert "x-ratelimit-limit-requests" in status["limits"]["rpm"]["source"]
        km.close()
        _, settled = drive(sp, WINDOW * 3)
        assert limited(settled) == []
        assert fp.key_stats(s[0]).rate_limited == 0
        assert fp.key_stats(s[1]).rate_limited == 0
        assert len(served(settled)) >= 2 * (2 + 6)  # the limits are used, not only learned


def test_another_app_spending_the_key_causes_no_429_after_the_first_answer() -> None:
    s = secrets(1)
    with FakeProvider(rpm=5, window=WINDOW, process=True) as fp:
        sp = spec(fp, "openai", 1, 5, s)
        km = build(sp)
        warm_up(sp)
        from rotating_llm.langchain import RotatingChatModel

        llm = RotatingChatModel(model=sp["model"], key_manager=km)
        fp.spend(s[0], requests=3)  # another app, just before our first answer
        llm.invoke("hi")
        assert km.get_key_status("k0")["rpm_usage"] == 4  # 1 ours + 3 held
        km.close()
        _, settled = drive(sp, WINDOW * 2.5)
        assert limited(settled) == []
        assert fp.key_stats(s[0]).rate_limited == 0
        assert len(served(settled)) >= 5


def test_a_project_of_three_keys_with_quota_groups_serves_exactly_its_rpm() -> None:
    s = secrets(3)
    with FakeProvider(projects={"proj-a": s}, project_rpm=4, window=WINDOW, process=True) as fp:
        sp = spec(fp, "gemini", 3, 10, s, quota_group="proj-a")
        sp["quota_groups"] = [{"group_id": "proj-a", "rpm": 4}]
        _, settled = drive(sp, WINDOW * 3)
        assert limited(settled) == []
        assert sum(fp.key_stats(x).rate_limited for x in s) == 0
        instants = served(settled)
        # exactly 4 in any window (the pool's windows slide, like the provider's)
        assert max(sum(1 for u in instants if t <= u < t + WINDOW) for t in instants) == 4
        assert len(instants) >= 4 * 3 - 4


def test_a_project_of_three_keys_without_quota_groups_learns_after_one_429_each() -> None:
    s = secrets(3)
    with FakeProvider(projects={"proj-a": s}, project_rpm=4, window=WINDOW, process=True) as fp:
        sp = spec(fp, "gemini", 3, 10, s)
        _, settled = drive(sp, WINDOW * 4)
        first = first_contact(settled)
        trips = limited(settled)
        per = Counter((k, o.split("@")[1]) for _, k, o in trips)
        assert all(n == 1 for n in per.values()), per
        assert all(t < first + WINDOW for t, _, _ in trips), (first, trips)
        assert sum(fp.key_stats(x).rate_limited for x in s) == len(trips)
        km = build(sp)
        group = km.get_key_status("k0")["learned_group"]
        km.close()
        assert group is not None and group["rpm_limit"] == 4
        assert group["key_ids"] == ["k0", "k1", "k2"]
        # the windows after the first are served at the project's rate
        assert len(served(settled)) >= 4 * 3
