"""What each pool served, got 429s for and refused, per minute, across every process.

The settle script counts served requests and 429s per key, and the ``count`` script
the refusals callers saw per pool, in ``rates:<minute>`` hashes of the pool (Redis's
clock; ``schema.RATES``). Reading them is one pipelined round trip for every pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rotating_llm.limiter import _schema as schema
from rotating_llm.storage import Store, translate_errors

__all__ = ["WINDOW_MINUTES", "read_rates"]

#: Minutes summed in the counts ``read_rates`` returns (the current one included).
WINDOW_MINUTES = 5

_NAMES = {code: name for name, code in schema.RATES.items()}


def _pool_rates(buckets: list[dict[str, str]], frac: float) -> dict[str, Any]:
    """Counts over the window and a per-minute rate over the last 60 s (the current
    bucket plus the share of the previous one still inside those 60 s)."""
    totals: dict[str, int] = dict.fromkeys(schema.RATES, 0)
    keys: dict[str, dict[str, float]] = {}
    weights = [0.0] * (len(buckets) - 2) + [1.0 - frac, 1.0]
    rates: dict[str, float] = dict.fromkeys(schema.RATES, 0.0)
    for bucket, weight in zip(buckets, weights, strict=True):
        for field, raw in bucket.items():
            code, _, kid = field.partition(":")
            name = _NAMES.get(code)
            if name is None:
                continue
            n = int(raw)
            totals[name] += n
            rates[name] += n * weight
            if kid:
                row = keys.setdefault(kid, {})
                row[name] = row.get(name, 0) + n
                row[f"{name}_rate"] = row.get(f"{name}_rate", 0.0) + n * weight
    return {
        "window_s": len(buckets) * schema.RATE_BUCKET_S,
        "counts": totals,
        "per_minute": {k: round(v, 2) for k, v in rates.items()},
        "keys": keys,
    }


def read_rates(
    store: Store, pools: Sequence[str], minutes: int = WINDOW_MINUTES
) -> dict[str, dict[str, Any]]:
    """Per pool: ``counts`` over the last ``minutes`` (2-10) minutes, ``per_minute``
    rates, and per key id its ``served``/``rate_limited`` counts and ``*_rate``s."""
    minutes = max(2, min(minutes, schema.RATE_TTL_S // schema.RATE_BUCKET_S))
    with translate_errors("read rates", store.description):
        sec, usec = store.sync.time()
        now = int(sec) + int(usec) / 1_000_000
        current = int(now // schema.RATE_BUCKET_S)
        frac = (now - current * schema.RATE_BUCKET_S) / schema.RATE_BUCKET_S
        pipe = store.sync.pipeline(transaction=False)
        for pool in pools:
            base = schema.pool_base(store.prefix, pool)
            for minute in range(current - minutes + 1, current + 1):
                pipe.hgetall(f"{base}rates:{minute}")
        replies = pipe.execute()
    return {
        pool: _pool_rates(replies[i * minutes : (i + 1) * minutes], frac)
        for i, pool in enumerate(pools)
    }
