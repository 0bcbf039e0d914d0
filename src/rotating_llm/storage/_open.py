"""Opening the store the settings describe: a Redis server, a cluster, or embedded."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis

from rotating_llm.config import Settings
from rotating_llm.errors import ConfigError
from rotating_llm.storage._store import Store, _embedded
from rotating_llm.storage._timing import timing_of

__all__ = ["open_store", "safe_url"]


def safe_url(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, ""))


def _async_redis(url: str, opts: dict[str, Any], pool: dict[str, Any]) -> Any:
    import redis.asyncio  # loaded on first async use only

    blocking = redis.asyncio.BlockingConnectionPool.from_url(url, **pool, **opts)
    return redis.asyncio.Redis(connection_pool=blocking)


def open_store(settings: Settings, *, announce: bool = True) -> Store:
    """Open the store ``settings`` describe: Redis, Redis Cluster, or embedded if no URL."""
    url = settings.redis_url
    if not url:
        return _embedded(settings.key_prefix, announce)
    scheme = urlsplit(url).scheme
    cluster = settings.redis_cluster or scheme in ("redis+cluster", "rediss+cluster")
    if cluster and "+cluster" in scheme:
        url = url.replace("+cluster", "", 1)
    if scheme.replace("+cluster", "") not in ("redis", "rediss", "unix"):
        raise ConfigError(f"REDIS_URL: unsupported scheme {scheme!r} (use redis:// or rediss://)")
    opts: dict[str, Any] = {
        "decode_responses": True,
        "socket_connect_timeout": 2.0,
        "socket_timeout": 5.0,
    }
    where = safe_url(url)
    try:
        if cluster:
            from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
            from redis.cluster import RedisCluster

            cluster_client = RedisCluster.from_url(url, **opts)
            return Store(
                "cluster",
                where,
                cluster_client,
                lambda: AsyncRedisCluster.from_url(url, **opts),
                settings.key_prefix,
                timing_of(settings),
            )
        # blocking pools: many waiting callers wait for a connection instead of failing
        pool = {
            "max_connections": settings.redis_max_connections,
            "timeout": settings.redis_pool_timeout,
        }
        sync = redis.Redis(
            connection_pool=redis.BlockingConnectionPool.from_url(url, **pool, **opts)
        )
    except (ValueError, redis.RedisError) as exc:
        raise ConfigError(f"REDIS_URL {where}: {type(exc).__name__}: {exc}") from exc
    return Store(
        "redis",
        where,
        sync,
        lambda: _async_redis(url, opts, pool),
        settings.key_prefix,
        timing_of(settings),
    )
