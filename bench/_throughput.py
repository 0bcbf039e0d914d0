"""Decisions per second (acquire + complete) from 1..N processes against one Redis or a cluster.

Every process builds its own ``KeyManager`` on the same pool (100 keys, limits far above
the load, so every decision is a grant), waits for a common start instant, then loops
``acquire`` + ``complete`` for ``duration`` seconds. The sum of the processes' rates is
the figure. All processes share one pool, whose keys live in one hash slot (the pool's
hash tag), so on a cluster one master serves the whole pool. The Redis servers' CPU time
over the measured seconds (``INFO cpu``) says whether Redis or the clients were the limit.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from typing import Any

POOL = "tput"


def _worker(
    redis_url: str,
    cluster: bool,
    prefix: str,
    pool_size: int,
    start_at: float,
    duration: float,
    op: str = "decide",
    pool: str = POOL,
) -> tuple[int, float]:
    from rotating_llm import APIKey, KeyManager, Settings
    from rotating_llm.secrets import EnvSecretStore

    keys = [
        APIKey(key_id=f"t{i}", model_name=pool, provider="x", rpm=10**8, tpm=10**12)
        for i in range(pool_size)
    ]
    env = {f"API_KEY_T{i}": f"bench-secret-{i}" for i in range(pool_size)}
    km = KeyManager(
        keys,
        settings=Settings(
            redis_url=redis_url, redis_cluster=cluster, key_prefix=prefix, redact_logs=False
        ),
        secret_store=EnvSecretStore(env),
    )
    for _ in range(20):
        km.acquire(pool, 1).complete(1)
    client = km.store.primary.sync
    while time.time() < start_at:
        time.sleep(0.001)
    end = start_at + duration
    begin = time.time()
    n = 0
    if op == "ping":  # the baseline: the library's own redis-py client, same process count
        while time.time() < end:
            client.ping()
            n += 1
    else:
        while time.time() < end:
            km.acquire(pool, 10).complete(7)
            n += 1
    elapsed = time.time() - begin
    km.close()
    return n, elapsed


def decisions_per_second(
    redis_url: str,
    procs: int,
    *,
    cluster: bool = False,
    pool_size: int = 100,
    duration: float = 5,
    op: str = "decide",
    pools: int = 1,
    node_urls: list[str] | None = None,
) -> dict[str, Any]:
    """Sum of ``procs`` processes' rates of ``op`` (``decide``: acquire + complete;
    ``ping``: ``client.ping()``); process ``i`` uses pool ``i % pools``. ``node_urls``:
    the servers whose CPU time is summed (default: ``redis_url``'s)."""
    prefix = f"benchtp{uuid.uuid4().hex[:8]}:"
    ctx = multiprocessing.get_context("spawn")
    start_at = time.time() + 3 + 0.75 * procs  # every process imported and warmed by then
    args = [
        (redis_url, cluster, prefix, pool_size, start_at, duration, op, f"{POOL}{i % pools}")
        for i in range(procs)
    ]
    cpu: list[float] = []
    sampler = threading.Thread(
        target=_sample_cpu, args=(node_urls or [redis_url], start_at, duration, cpu), daemon=True
    )
    sampler.start()
    with ctx.Pool(procs) as pool:
        results = pool.starmap(_worker, args)
    sampler.join(timeout=10)
    _cleanup(redis_url, cluster, prefix)
    # each process's own rate over the time it actually ran (a late starter runs less)
    rate = sum(n / elapsed for n, elapsed in results if elapsed > 0)
    return {
        "processes": procs,
        "op": op,
        "pools": pools,
        "decisions": sum(n for n, _ in results),
        "decisions_per_s": round(rate, 1),
        "seconds": duration,
        "late_start_s_max": round(max(duration - e for _, e in results), 2),
        # CPU seconds the Redis server(s) used per second of the run (1.0: one core busy)
        "redis_cpu_cores": round((cpu[1] - cpu[0]) / duration, 3) if len(cpu) == 2 else None,
    }


def _cpu_seconds(node_urls: list[str]) -> float:
    import redis

    total = 0.0
    for url in node_urls:
        client = redis.Redis.from_url(url)
        try:
            info = client.info("cpu")
            total += float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
        finally:
            client.close()
    return total


def _sample_cpu(node_urls: list[str], start_at: float, duration: float, out: list[float]) -> None:
    """Append the servers' CPU seconds at ``start_at`` and at ``start_at + duration``."""
    try:
        for at in (start_at, start_at + duration):
            time.sleep(max(0.0, at - time.time()))
            out.append(_cpu_seconds(node_urls))
    except Exception:  # a figure missing from the JSON, not a failed run
        out.clear()


def _cleanup(redis_url: str, cluster: bool, prefix: str) -> None:
    import redis
    from redis.cluster import RedisCluster

    client: Any = RedisCluster.from_url(redis_url) if cluster else redis.Redis.from_url(redis_url)
    try:
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
    except Exception:  # cleanup is best effort; the keys carry a unique prefix
        pass
    finally:
        client.close()
