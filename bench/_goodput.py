"""Goodput under 3x demand against the simulator: rotating-llm vs LiteLLM's router vs round robin.

One simulator per system (``FakeProvider(rpm=R, window=W, process=True)``), ``K`` keys of
``R`` requests per ``W`` seconds each: the pool's capacity is ``K * R`` requests in any
``W`` seconds. Requests arrive open-loop at 3x that rate for ``windows * W`` seconds; each
request is retried until it is served or the run ends. Counted from the simulator:
requests served and 429s answered. In any span of ``windows * W`` seconds a sliding
window admits at most ``windows * K * R`` requests, so ``served / that`` is the share of
capacity used (goodput).

- ``rotating_llm``: ``KeyManager.aacquire`` waits for capacity (Redis's clock), one
  provider call, ``acomplete`` (or ``afail`` on a 429, then acquire again).
- ``litellm_usage_based_routing_v2``: one ``litellm.Router`` (usage-based-routing-v2,
  in-memory counters: one process), each deployment ``rpm = R * 60 / W``: LiteLLM counts
  per clock minute and has no window setting, so it gets the same average rate. Its own
  retries (``num_retries=2``); a request it still fails is retried by the caller after
  the error's Retry-After (else 1 s).
- ``round_robin``: ``itertools.cycle`` over the keys, no limiter; a 429 is retried on the
  next key after the answer's Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
import uuid
import warnings
from typing import Any

MODEL = "gpt-fake"


class _FallbackCounter(logging.Handler):
    """Counts the library's "Redis lost" warnings: each one starts a spell of the
    in-process fallback limiter, which does not see Redis's reservations."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lost = 0
        self.causes: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("Redis lost"):
            self.lost += 1
            text = str(record.args[0]) if record.args else ""
            cause = text.rsplit(": ", 2)[-2] if ": " in text else text
            self.causes[cause] = self.causes.get(cause, 0) + 1


def _body(i: int) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": f"hello {i}"}]}


async def _drive(
    one: Any, rate: float, duration: float
) -> tuple[float, float, int]:  # start, end, arrivals
    """Start ``one(i, deadline)`` at ``rate`` per second for ``duration``; cancel at the end."""
    start = time.monotonic()
    deadline = start + duration
    tasks: list[asyncio.Task[Any]] = []
    i = 0
    while True:
        due = start + i / rate
        if due >= deadline:
            break
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, deadline)))
        i += 1
    remaining = deadline - time.monotonic()
    if remaining > 0:
        await asyncio.sleep(remaining)
    end = time.monotonic()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return start, end, i


async def _ours(
    keys: list[str], fp: Any, cfg: dict[str, Any], redis_url: str, counter: _FallbackCounter
) -> int:
    import httpx

    from rotating_llm import APIKey, FailureKind, KeyManager, Settings
    from rotating_llm.secrets import EnvSecretStore

    api_keys = [
        APIKey(
            key_id=f"g{i}",
            model_name=MODEL,
            provider="openai",
            rpm=cfg["rpm"],
            tpm=10**9,
            base_url=fp.openai_url,
        )
        for i in range(len(keys))
    ]
    env = {f"API_KEY_G{i}": k for i, k in enumerate(keys)}
    logging.getLogger("rotating_llm.storage").addHandler(counter)
    km = KeyManager(
        api_keys,
        settings=Settings(
            redis_url=redis_url,
            key_prefix=f"benchgp{uuid.uuid4().hex[:8]}:",
            window_seconds=cfg["window"],
            redact_logs=False,
        ),
        secret_store=EnvSecretStore(env),
    )
    async with httpx.AsyncClient(timeout=30) as client:

        async def one(i: int, deadline: float) -> None:
            while time.monotonic() < deadline:
                lease = await km.aacquire(MODEL, 10, max_wait=max(0.0, deadline - time.monotonic()))
                try:
                    resp = await client.post(
                        f"{lease.base_url}/chat/completions",
                        json=_body(i),
                        headers={"Authorization": f"Bearer {lease.api_key.get_secret_value()}"},
                    )
                except BaseException:
                    await lease.arelease()
                    raise
                if resp.status_code == 200:
                    await lease.acomplete(resp.json()["usage"]["total_tokens"])
                    return
                retry = float(resp.headers.get("retry-after", "1"))
                await lease.afail(FailureKind.RATE_LIMIT, retry_after=retry)

        async def guarded(i: int, deadline: float) -> None:
            with contextlib.suppress(Exception):  # AllKeysExhaustedError at the deadline
                await one(i, deadline)

        try:
            _, _, arrivals = await _drive(guarded, cfg["arrival_rate"], cfg["duration"])
        finally:
            logging.getLogger("rotating_llm.storage").removeHandler(counter)
    await km.aclose()
    return arrivals


async def _round_robin(keys: list[str], fp: Any, cfg: dict[str, Any]) -> int:
    import httpx

    cycle = itertools.cycle(keys)
    async with httpx.AsyncClient(timeout=30) as client:

        async def one(i: int, deadline: float) -> None:
            while time.monotonic() < deadline:
                resp = await client.post(
                    f"{fp.openai_url}/chat/completions",
                    json=_body(i),
                    headers={"Authorization": f"Bearer {next(cycle)}"},
                )
                if resp.status_code == 200:
                    return
                await asyncio.sleep(float(resp.headers.get("retry-after", "1")))

        _, _, arrivals = await _drive(one, cfg["arrival_rate"], cfg["duration"])
    return arrivals


async def _litellm(keys: list[str], fp: Any, cfg: dict[str, Any]) -> int:
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    warnings.simplefilter("ignore")
    import logging

    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    from litellm import Router

    per_minute = round(cfg["rpm"] * 60 / cfg["window"])
    router = Router(
        model_list=[
            {
                "model_name": "pool",
                "litellm_params": {
                    "model": f"openai/{MODEL}",
                    "api_key": key,
                    "api_base": fp.openai_url,
                    "rpm": per_minute,
                },
                "model_info": {"id": f"gp-{i}"},
            }
            for i, key in enumerate(keys)
        ],
        routing_strategy="usage-based-routing-v2",
        num_retries=2,
    )

    async def one(i: int, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                await router.acompletion(model="pool", messages=_body(i)["messages"], num_retries=2)
                return
            except Exception as exc:
                headers = getattr(getattr(exc, "response", None), "headers", None) or {}
                try:
                    retry = float(headers.get("retry-after", "1"))
                except (TypeError, ValueError):
                    retry = 1.0
                await asyncio.sleep(max(0.05, retry))

    _, _, arrivals = await _drive(one, cfg["arrival_rate"], cfg["duration"])
    return arrivals


SYSTEMS = ("rotating_llm", "litellm_usage_based_routing_v2", "round_robin")


def run_goodput(
    redis_url: str,
    *,
    keys: int = 5,
    rpm: int = 6,
    window: float = 5.0,
    windows: int = 6,
    demand: float = 3.0,
) -> dict[str, Any]:
    from rotating_llm.testing import FakeProvider

    capacity_per_window = keys * rpm
    cfg = {
        "rpm": rpm,
        "window": window,
        "duration": windows * window,
        "arrival_rate": demand * capacity_per_window / window,
    }
    out: dict[str, Any] = {
        "keys": keys,
        "limit_per_key_per_window": rpm,
        "window_seconds": window,
        "windows": windows,
        "demand_x_capacity": demand,
        "capacity_per_minute": round(capacity_per_window * 60 / window, 1),
        "max_servable": capacity_per_window * windows,
        "litellm_rpm_per_deployment": round(rpm * 60 / window),
        "systems": {},
    }
    for name in SYSTEMS:
        run = uuid.uuid4().hex[:8]
        key_list = [f"sk-goodput-{run}-{i}" for i in range(keys)]
        counter = _FallbackCounter()
        with FakeProvider(rpm=rpm, window=window, process=True) as fp:
            if name == "rotating_llm":
                arrivals = asyncio.run(_ours(key_list, fp, cfg, redis_url, counter))
            elif name == "round_robin":
                arrivals = asyncio.run(_round_robin(key_list, fp, cfg))
            else:
                arrivals = asyncio.run(_litellm(key_list, fp, cfg))
            stats = list(fp.stats().values())
        served = sum(s.served for s in stats)
        out["systems"][name] = {
            "arrivals": arrivals,
            "provider_requests": sum(s.requests for s in stats),
            "served": served,
            "provider_429s": sum(s.rate_limited for s in stats),
            "served_per_minute": round(served * 60 / cfg["duration"], 1),
            "goodput_vs_capacity": round(served / out["max_servable"], 4),
        }
        if name == "rotating_llm":  # spells on the in-process fallback limiter, and why
            out["systems"][name]["store_fallbacks"] = counter.lost
            out["systems"][name]["store_fallback_causes"] = counter.causes
    return out
