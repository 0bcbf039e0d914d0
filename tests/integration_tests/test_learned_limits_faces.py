"""The LiteLLM face feeds learned limits: the headers LiteLLM keeps of a success, and a
429's body and headers (a real Router on the simulator, in a spawned process)."""

from __future__ import annotations

import multiprocessing
import os
import time
import uuid
from typing import Any

import pytest

from rotating_llm.testing import FakeProvider

pytestmark = [pytest.mark.multiprocess]


def _route(
    url: str, secrets: list[str], prefix: str, calls: int, learned: tuple[str, ...] = ()
) -> dict[str, Any]:
    """``calls`` completions through a Router with the rotating strategy; statuses, once
    the keys in ``learned`` show a learned rpm (LiteLLM runs its success callbacks on a
    worker of its own, after the call returned; 10 s at most)."""
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    import litellm

    from rotating_llm.litellm import install

    deps = [
        {
            "model_name": "pool",
            "litellm_params": {"model": "openai/gpt-fake", "api_key": s, "api_base": url,
                               "rpm": 10},
            "model_info": {"id": f"d{i}"},
        }
        for i, s in enumerate(secrets)
    ]  # fmt: skip
    router = litellm.Router(model_list=deps, num_retries=0)
    inst = install(router, redis_url=os.environ["REDIS_URL"], key_prefix=prefix, max_wait=0)
    outcomes = []
    for _ in range(calls):
        try:
            router.completion(model="pool", messages=[{"role": "user", "content": "hi"}])
            outcomes.append("ok")
        except Exception as exc:
            outcomes.append(type(exc).__name__)
    deadline = time.monotonic() + 10.0
    while True:
        statuses = {s["key_id"]: s["limits"]["rpm"] for s in inst.manager.get_all_key_statuses()}
        if time.monotonic() > deadline or all(statuses[k]["source"] != "file" for k in learned):
            break
        time.sleep(0.05)
    inst.close()
    return {"outcomes": outcomes, "rpm": statuses}


def _run(*args: Any) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(_route, args)  # type: ignore[no-any-return]


def test_litellm_successes_and_429s_teach_the_limits(redis_url: str) -> None:
    s = [f"sk-ll-{i}-{uuid.uuid4().hex}" for i in range(2)]
    with FakeProvider(rpm=100, true_limits={s[0]: {"rpm": 3}}, process=True) as fp:
        out = _run(fp.openai_url, s, f"t{uuid.uuid4().hex[:8]}:", 2, ("d0",))
        assert out["outcomes"] == ["ok", "ok"]
        # each deployment answered once: its x-ratelimit-limit-requests was adopted
        assert out["rpm"]["d0"]["effective"] == 3
        assert "x-ratelimit-limit-requests" in out["rpm"]["d0"]["source"]
        assert out["rpm"]["d1"]["source"] == "file"  # the simulator's 100 is above 10
        assert fp.key_stats(s[0]).rate_limited == 0


def test_litellm_429_headers_teach_the_limit(redis_url: str) -> None:
    s = [f"sk-ll-{uuid.uuid4().hex}"]
    with FakeProvider(rpm=100, true_limits={s[0]: {"rpm": 1}}, process=True) as fp:
        fp.spend(s[0], requests=1)  # another app took the only request of the minute
        out = _run(fp.openai_url, s, f"t{uuid.uuid4().hex[:8]}:", 1, ("d0",))
        assert fp.key_stats(s[0]).rate_limited == 1
        assert out["outcomes"] != ["ok"]
        assert out["rpm"]["d0"]["effective"] == 1  # learned from the 429's headers
