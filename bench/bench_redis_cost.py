"""Redis CPU per decision, from ``INFO commandstats``, beside other limiters in one run.

Usage: python bench/bench_redis_cost.py [--redis-url URL] [--n 2000] [--out FILE]

For pools of 3, 100, 1,000 and 10,000 keys it measures the Redis time (``usec`` deltas
of ``INFO commandstats``, summed over every command, divided by the operations run) of:

- ``grant``: ``acquire`` + ``complete`` of a lease (the acquire script and the settle
  script, each read separately as well), and the granting decision alone
  (``grant_decision_us``: acquires whose completions are sent after the measurement);
- ``refusal``: the decision of an ``acquire`` refused because every key of the pool is
  full (one script call); ``refusal_with_reasons_report`` adds what a refused
  ``KeyManager.acquire`` then reads to name each key's reason in its error (a status
  read of every key: it grows with the pool, and only a refusal that is raised pays it);

``grouped``: the same grant and refusal on a pool whose keys share quota groups of three
(one provider project each, limits as far away as the keys'), against the ungrouped pool
of the same size (issue target: at most 1.3x);

and, on the same server in the same run, one hit of the ``limits`` library's moving
window and fixed window (its Redis storage) and a trivial ``EVAL "return 1"``.
JSON on stdout (and in --out). Redis time is the ceiling of one Redis: it bounds the
decisions per second whatever the clients do.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import uuid
from pathlib import Path
from typing import Any

from _commandstats import SCRIPTS, command_stats, delta, script_us

POOLS = (3, 100, 1000, 10000)
GROUPED_POOLS = (3, 1000)
TARGET_GRANT_US = 25.0
TARGET_GROUPED_RATIO = 1.3


def _per_op(changes: dict[str, tuple[int, int]], n: int) -> float:
    """Redis usec per operation: the script commands' time (it includes every command
    a script runs, which ``commandstats`` also counts on its own; those are not added)
    plus any other command a client sent (none on these paths but ``info``)."""
    inner = ("time", "zadd", "zrem", "zrange", "zrangebyscore", "zremrangebyscore",
             "zscore", "hget", "hmget", "hset", "hdel", "hexists", "hincrby", "hkeys",
             "get", "set", "pttl", "pexpire", "expire", "del", "exists", "incr",
             "zcard", "incrby", "hgetall", "zcount", "zrank", "zincrby")  # fmt: skip
    return round(sum(u for k, (_, u) in changes.items() if k not in inner) / n, 2)


def measure_pool(redis_url: str, size: int, n: int, grouped: bool = False) -> dict[str, Any]:
    import redis

    from rotating_llm import APIKey, KeyManager, QuotaGroup, Settings
    from rotating_llm.errors import AllKeysExhaustedError
    from rotating_llm.limiter import Refusal
    from rotating_llm.secrets import EnvSecretStore

    prefix = f"bench{uuid.uuid4().hex[:8]}:"
    admin = redis.Redis.from_url(redis_url)

    def manager(model: str, rpm: int) -> Any:
        keys = [
            APIKey(
                key_id=f"{model}{i}",
                model_name=model,
                provider="x",
                rpm=rpm,
                tpm=10**12,
                quota_group=f"{model}-p{i // 3}" if grouped else None,
            )
            for i in range(size)
        ]
        groups = (
            [
                QuotaGroup(group_id=f"{model}-p{j}", rpm=rpm * 3, tpm=10**12)
                for j in range((size + 2) // 3)
            ]
            if grouped
            else []
        )
        env = {f"API_KEY_{model.upper()}{i}": "s" for i in range(size)}
        return KeyManager(
            keys,
            settings=Settings(redis_url=redis_url, key_prefix=prefix, redact_logs=False),
            secret_store=EnvSecretStore(env),
            quota_groups=groups,
        )

    # grant path: limits far away, every call granted
    km = manager("g", 10**8)
    for _ in range(50):
        km.acquire("g", 10).complete(7)
    km.limiter.flush()
    before = command_stats(admin)
    for _ in range(n):
        km.acquire("g", 10).complete(7)
    km.limiter.flush()
    grant = delta(admin, before)
    # the decision alone: acquires whose completions are sent after the measurement
    held = []
    before = command_stats(admin)
    for _ in range(n):
        held.append(km.acquire("g", 10))
    decision = delta(admin, before)
    for lease in held:
        lease.complete(7)
    km.limiter.flush()
    km.close()

    # refusal path: one request per key per window, all used
    km = manager("r", 1)
    for _ in range(size):
        km.acquire("r", 1, max_wait=0).complete(1)
    km.limiter.flush()
    refused = 0
    before = command_stats(admin)
    for _ in range(n):  # the decision alone: one acquire script call, refused
        refused += isinstance(km.limiter.reserve("r", 1), Refusal)
    refusal = delta(admin, before)
    m = max(1, n // 20)  # the whole refused acquire, with each key's reason for the error
    before = command_stats(admin)
    for _ in range(m):
        with contextlib.suppress(AllKeysExhaustedError):
            km.acquire("r", 1, max_wait=0)
    reported = delta(admin, before)
    km.close()
    for key in admin.scan_iter(f"{prefix}*", count=1000):
        admin.delete(key)
    admin.close()
    acquire = {k: v for k, v in grant.items() if k in SCRIPTS}
    return {
        "keys": size,
        "grouped": grouped,
        "grant_acquire_complete_us": _per_op(grant, n),
        "grant_script_us_per_call": script_us(acquire),
        "grant_decision_us": _per_op(decision, n),
        "refusal_acquire_us": _per_op(refusal, n),
        "refused": refused,
        "refusal_with_reasons_report_us": _per_op(reported, m),
        "grant_commands": {k: {"calls": c, "usec": u} for k, (c, u) in grant.items()},
        "refusal_commands": {k: {"calls": c, "usec": u} for k, (c, u) in refusal.items()},
    }


def measure_limits(redis_url: str, n: int) -> dict[str, float]:
    import redis
    from limits import RateLimitItemPerMinute
    from limits.storage import RedisStorage
    from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

    admin = redis.Redis.from_url(redis_url)
    storage = RedisStorage(redis_url)
    item = RateLimitItemPerMinute(10**8)
    out = {}
    for name, cls in (("limits_moving_window", MovingWindowRateLimiter),
                      ("limits_fixed_window", FixedWindowRateLimiter)):  # fmt: skip
        limiter = cls(storage)
        ident = uuid.uuid4().hex
        for _ in range(50):
            limiter.hit(item, ident)
        before = command_stats(admin)
        for _ in range(n):
            limiter.hit(item, ident)
        out[f"{name}_us"] = _per_op(delta(admin, before), n)
    fast = admin.register_script("return 1")
    fast()
    before = command_stats(admin)
    for _ in range(n):
        fast()
    out["eval_return_1_us"] = _per_op(delta(admin, before), n)
    storage.reset()
    admin.close()
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import os

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1/0"))
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--pools", default=",".join(map(str, POOLS)))
    parser.add_argument("--grouped-pools", default=",".join(map(str, GROUPED_POOLS)))
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    baselines = measure_limits(args.redis_url, args.n)
    pools = [measure_pool(args.redis_url, int(s), args.n) for s in args.pools.split(",")]
    grouped = [
        measure_pool(args.redis_url, int(s), args.n, grouped=True)
        for s in args.grouped_pools.split(",")
        if s
    ]
    plain = {p["keys"]: p for p in pools}
    grouped_ratio = {
        str(g["keys"]): {
            what: round(g[what] / plain[g["keys"]][what], 2)
            for what in ("grant_decision_us", "grant_acquire_complete_us", "refusal_acquire_us")
        }
        for g in grouped
        if g["keys"] in plain
    }
    worst = max(p["grant_acquire_complete_us"] for p in pools)
    result = {
        "what": "Redis usec per operation (INFO commandstats deltas, all commands)",
        "n": args.n,
        "baselines": baselines,
        "pools": pools,
        "worst_grant_us": worst,
        "target_grant_us": TARGET_GRANT_US,
        "grant_vs_moving_window": round(worst / baselines["limits_moving_window_us"], 2),
        "refusal_le_grant": all(
            p["refusal_acquire_us"] <= p["grant_acquire_complete_us"] for p in pools
        ),
        "grouped_pools": grouped,
        "grouped_vs_ungrouped": grouped_ratio,
        "target_grouped_ratio": TARGET_GROUPED_RATIO,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
