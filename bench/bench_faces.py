"""The faces against the models and routers they wrap, on the same simulator, in one run.

- ``RotatingChatModel.ainvoke`` / ``.invoke`` (3 Gemini keys) against
  ``ChatGoogleGenerativeAI.ainvoke`` / ``.invoke`` built the way the face builds its
  provider models (``max_retries=1``), all on one ``FakeProvider(process=True)``;
- LiteLLM: a ``Router`` with ``install(router)`` against a plain ``Router`` on the same 3
  deployments of the simulator's OpenAI endpoint, ``router.acompletion``.

Calls are sequential (one caller: latency, not throughput), in interleaved rounds (direct,
face, direct, face ...) so load drifts hit both alike, after a warm-up. Beside each
phase a 1 ms ticker (a task on the same loop for async calls, a thread for sync calls)
records how late it wakes: its p99 lag shows a call stalling the loop (or holding the
GIL). Targets (issue 14): the face within 1 ms of what it wraps at p50, and the
ticker's lag beside the face no worse than beside the direct model (recorded ``met``
with a 1 ms allowance for noise).

Run: ``python bench/bench_faces.py [--quick] [--out bench/results/faces.json]`` with
``REDIS_URL`` set (else a throwaway redis-server is started).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import uuid
from pathlib import Path
from typing import Any

from _timing import atimed, percentile, timed

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network fetch

MODEL = "gemini-2.5-flash"
PROMPT = "Hello there, how are you?"
KEYS = 3


def _summary(times: list[float], lags: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(times) * 1e3, 3),
        "p99_ms": round(percentile(times, 0.99) * 1e3, 3),
        "ticker_p99_lag_ms": round(percentile(lags, 0.99) * 1e3, 3) if lags else 0.0,
        "calls": len(times),
    }


def _compare(direct: dict[str, float], face: dict[str, float], names: tuple[str, str]) -> dict:
    over = round(face["p50_ms"] - direct["p50_ms"], 3)
    lag_over = round(face["ticker_p99_lag_ms"] - direct["ticker_p99_lag_ms"], 3)
    return {
        names[0]: direct,
        names[1]: face,
        "p50_overhead_ms": over,
        "p50_ratio": round(face["p50_ms"] / direct["p50_ms"], 3),
        "ticker_p99_lag_over_direct_ms": lag_over,
        "targets": {
            "p50_within_1ms": {"value": over, "met": over <= 1.0},
            "ticker_lag_no_worse": {"value": lag_over, "met": lag_over <= 1.0},
        },
    }


# -- LangChain -------------------------------------------------------------------------


def _langchain(redis_url: str, fp: Any, calls: int, rounds: int) -> dict[str, Any]:
    from langchain_google_genai import ChatGoogleGenerativeAI

    from rotating_llm import APIKey, KeyManager, Settings
    from rotating_llm.langchain import RotatingChatModel
    from rotating_llm.secrets import EnvSecretStore

    run = uuid.uuid4().hex[:8]
    secrets = [f"AIza-faces-{run}-{i}" for i in range(KEYS)]
    km = KeyManager(
        [
            APIKey(
                key_id=f"f{i}",
                model_name=MODEL,
                provider="gemini",
                rpm=10**8,
                tpm=10**12,
                base_url=fp.url,
            )
            for i in range(KEYS)
        ],
        settings=Settings(redis_url=redis_url, key_prefix=f"benchfaces{run}:", redact_logs=False),
        secret_store=EnvSecretStore({f"API_KEY_F{i}": s for i, s in enumerate(secrets)}),
    )
    face = RotatingChatModel(model=MODEL, key_manager=km, max_wait=5)
    direct = ChatGoogleGenerativeAI(
        model=MODEL, google_api_key=secrets[0], base_url=fp.url, max_retries=1
    )
    per_round = max(1, calls // rounds)
    out: dict[str, Any] = {"keys": KEYS, "calls_each": per_round * rounds, "rounds": rounds}

    for _ in range(20):  # warm: connections, scripts, a provider model per key, tokenizer
        direct.invoke(PROMPT)
        face.invoke(PROMPT)
    t: dict[str, list[float]] = {k: [] for k in ("d", "f", "dl", "fl")}
    for _ in range(rounds):
        timed(lambda: direct.invoke(PROMPT), per_round, t["d"], t["dl"])
        timed(lambda: face.invoke(PROMPT), per_round, t["f"], t["fl"])
    out["invoke"] = _compare(
        _summary(t["d"], t["dl"]), _summary(t["f"], t["fl"]), ("direct", "rotating")
    )

    async def async_part() -> dict[str, Any]:
        for _ in range(20):
            await direct.ainvoke(PROMPT)
            await face.ainvoke(PROMPT)
        a: dict[str, list[float]] = {k: [] for k in ("d", "f", "dl", "fl")}
        for _ in range(rounds):
            await atimed(lambda: direct.ainvoke(PROMPT), per_round, a["d"], a["dl"])
            await atimed(lambda: face.ainvoke(PROMPT), per_round, a["f"], a["fl"])
        await face.aclose()
        await km.aclose()
        closer = getattr(getattr(direct, "client", None), "aio", None)
        if closer is not None:
            await closer.aclose()
        return _compare(
            _summary(a["d"], a["dl"]), _summary(a["f"], a["fl"]), ("direct", "rotating")
        )

    out["ainvoke"] = asyncio.run(async_part())
    for key in km.store.primary.sync.scan_iter(f"benchfaces{run}:*"):
        km.store.primary.sync.delete(key)
    km.close()
    return out


# -- LiteLLM ---------------------------------------------------------------------------


def _litellm(redis_url: str, fp: Any, calls: int, rounds: int) -> dict[str, Any]:
    import logging

    from litellm import Router

    from rotating_llm.litellm import install

    for name in ("LiteLLM", "LiteLLM Router"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    run = uuid.uuid4().hex[:8]

    def model_list() -> list[dict[str, Any]]:
        return [
            {
                "model_name": "pool",
                "litellm_params": {
                    "model": "openai/gpt-fake",
                    "api_key": f"sk-faces-{run}-{i}",
                    "api_base": fp.openai_url,
                    "rpm": 10**8,
                },
                "model_info": {"id": f"d{i}"},
            }
            for i in range(KEYS)
        ]

    plain, routed = Router(model_list=model_list()), Router(model_list=model_list())
    prefix = f"benchfacesll{run}:"
    installed = install(routed, redis_url=redis_url, key_prefix=prefix, max_wait=5)
    messages = [{"role": "user", "content": PROMPT}]
    per_round = max(1, calls // rounds)

    async def part() -> dict[str, Any]:
        for _ in range(20):
            await plain.acompletion(model="pool", messages=messages)
            await routed.acompletion(model="pool", messages=messages)
        a: dict[str, list[float]] = {k: [] for k in ("d", "f", "dl", "fl")}
        for _ in range(rounds):
            await atimed(
                lambda: plain.acompletion(model="pool", messages=messages),
                per_round,
                a["d"],
                a["dl"],
            )
            await atimed(
                lambda: routed.acompletion(model="pool", messages=messages),
                per_round,
                a["f"],
                a["fl"],
            )
        await installed.manager.limiter.aflush()
        await installed.aclose()
        return _compare(
            _summary(a["d"], a["dl"]), _summary(a["f"], a["fl"]), ("plain", "installed")
        )

    out = {"deployments": KEYS, "calls_each": per_round * rounds, "rounds": rounds}
    out["acompletion"] = asyncio.run(part())
    import redis

    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    client.close()
    return out


# -- entry points ----------------------------------------------------------------------


def run_faces(redis_url: str, *, calls: int = 400, rounds: int = 4) -> dict[str, Any]:
    """Every comparison of this module on one simulator (``bench/run.py``'s ``faces``)."""
    from rotating_llm.testing import FakeProvider

    with FakeProvider(process=True) as fp:
        lc = _langchain(redis_url, fp, calls, rounds)
        ll = _litellm(redis_url, fp, calls, rounds)
    targets = {
        "ainvoke_p50_within_1ms": lc["ainvoke"]["targets"]["p50_within_1ms"],
        "ainvoke_ticker_lag_no_worse": lc["ainvoke"]["targets"]["ticker_lag_no_worse"],
        "invoke_p50_within_1ms": lc["invoke"]["targets"]["p50_within_1ms"],
        "litellm_p50_within_1ms": ll["acompletion"]["targets"]["p50_within_1ms"],
    }
    return {"langchain": lc, "litellm": ll, "face_targets": targets}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="bench/results/faces.json")
    args = ap.parse_args()
    url = os.environ.get("REDIS_URL")
    server = None
    if not url:
        from rotating_llm.testing import RedisServer

        server = RedisServer()
        server.start()
        url = server.url
    try:
        calls = 100 if args.quick else 400
        result = {"load_at_start": os.getloadavg()[0], "cpu_count": os.cpu_count()}
        result.update(run_faces(url, calls=calls))
    finally:
        if server is not None:
            server.stop()
    result["load_at_end"] = os.getloadavg()[0]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
