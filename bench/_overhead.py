"""Per-call overhead of ``RotatingChatModel`` over calling ``ChatGoogleGenerativeAI`` directly.

Both against the same unlimited simulator (``FakeProvider(process=True)``, no limits),
with the same prompt and the same client settings (``max_retries=1``: one try, as the
wrapper builds its provider models). The calls alternate (direct, wrapped, direct, ...)
so both see the same machine; the difference of the medians is the overhead: the
wrapper's lease (one Redis script call), its settlement (another) and its bookkeeping.
"""

from __future__ import annotations

import statistics
import time
import uuid
from typing import Any

from _timing import percentile

MODEL = "gemini-2.5-flash"


def run_overhead(redis_url: str, *, calls: int = 400, keys: int = 3) -> dict[str, Any]:
    from langchain_google_genai import ChatGoogleGenerativeAI

    from rotating_llm import APIKey, KeyManager, Settings
    from rotating_llm.langchain import RotatingChatModel
    from rotating_llm.secrets import EnvSecretStore
    from rotating_llm.testing import FakeProvider

    run = uuid.uuid4().hex[:8]
    secrets = [f"AIza-bench-{run}-{i}" for i in range(keys)]
    with FakeProvider(process=True) as fp:
        km = KeyManager(
            [
                APIKey(
                    key_id=f"o{i}",
                    model_name=MODEL,
                    provider="gemini",
                    rpm=10**8,
                    tpm=10**12,
                    base_url=fp.url,
                )
                for i in range(keys)
            ],
            settings=Settings(redis_url=redis_url, key_prefix=f"benchov{run}:", redact_logs=False),
            secret_store=EnvSecretStore({f"API_KEY_O{i}": s for i, s in enumerate(secrets)}),
        )
        wrapped = RotatingChatModel(model=MODEL, key_manager=km, max_wait=5)
        direct = ChatGoogleGenerativeAI(
            model=MODEL, google_api_key=secrets[0], base_url=fp.url, max_retries=1
        )
        prompt = "Hello there, how are you?"
        for _ in range(30):  # warm both: connections, scripts, provider models per key
            direct.invoke(prompt)
            wrapped.invoke(prompt)
        d_times: list[float] = []
        w_times: list[float] = []
        for _ in range(calls):
            t0 = time.perf_counter()
            direct.invoke(prompt)
            t1 = time.perf_counter()
            wrapped.invoke(prompt)
            t2 = time.perf_counter()
            d_times.append(t1 - t0)
            w_times.append(t2 - t1)
        served = sum(s.served for s in fp.stats().values())
        for key in km.store.primary.sync.scan_iter(f"benchov{run}:*"):
            km.store.primary.sync.delete(key)
        km.close()
    d50 = statistics.median(d_times) * 1e3
    w50 = statistics.median(w_times) * 1e3
    return {
        "calls_each": calls,
        "keys": keys,
        "direct_p50_ms": round(d50, 3),
        "wrapped_p50_ms": round(w50, 3),
        "overhead_p50_ms": round(w50 - d50, 3),
        "direct_p90_ms": round(percentile(d_times, 0.9) * 1e3, 3),
        "wrapped_p90_ms": round(percentile(w_times, 0.9) * 1e3, 3),
        "provider_served": served,
    }
