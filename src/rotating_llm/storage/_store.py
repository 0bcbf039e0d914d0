"""A Redis deployment (server, cluster or the embedded in-process store) and its clients."""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

import redis

from rotating_llm.config import Settings
from rotating_llm.errors import ConfigError

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript, Script

__all__ = ["Store", "load_script", "open_store", "safe_url"]

logger = logging.getLogger("rotating_llm.storage")

StoreKind = Literal["redis", "cluster", "embedded"]

_STANDALONE = frozenset({"user_limit"})  # scripts without the pool prelude
_script_cache: dict[str, str] = {}
_warned_embedded = False
_warn_lock = threading.Lock()


def load_script(name: str) -> str:
    """The Lua source of script ``name``: the shared prelude followed by the script."""
    if name not in _script_cache:
        pkg = resources.files("rotating_llm.limiter") / "lua"
        body = (pkg / f"{name}.lua").read_text(encoding="utf-8")
        if name in _STANDALONE:
            _script_cache[name] = body
        else:
            prelude = (pkg / "_prelude.lua").read_text(encoding="utf-8")
            _script_cache[name] = prelude + "\n" + body
    return _script_cache[name]


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


class Store:
    """One Redis deployment: its sync client, one async client per event loop, its scripts.

    Keys of a pool share the hash tag ``{pool}`` so every script runs on one cluster slot.
    """

    def __init__(
        self,
        kind: StoreKind,
        description: str,
        sync_client: Any,
        async_factory: Any,
        prefix: str,
    ) -> None:
        self.kind: StoreKind = kind
        self.description = description
        self.prefix = prefix
        self.sync: redis.Redis = sync_client
        self._async_factory = async_factory
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )
        self._scripts: dict[str, Script] = {}
        self._aload_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        self._ascripts: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, AsyncScript]
        ] = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        return f"Store(kind={self.kind!r}, at={self.description!r}, prefix={self.prefix!r})"

    @property
    def is_embedded(self) -> bool:
        """True for the in-process store (limits hold per process only)."""
        return self.kind == "embedded"

    def pool_keys(self, pool: str) -> list[str]:
        """``KEYS`` of every limiter script for ``pool``: its availability set and config."""
        if "{" in pool or "}" in pool:
            raise ConfigError(f"model name {pool!r} must not contain '{{' or '}}'")
        base = f"{self.prefix}{{{pool}}}:"
        return [base + "avail", base + "cfg"]

    def key(self, *parts: str) -> str:
        """A key outside any pool: ``<prefix>part1:part2``."""
        return self.prefix + ":".join(parts)

    @property
    def async_client(self) -> Any:
        """The async client of the running event loop (created on first use in that loop)."""
        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None:
            client = self._async_factory()
            self._async[loop] = client
        return client

    def script(self, name: str) -> Script:
        """Script ``name`` registered on the sync client (EVALSHA, loading once if missing)."""
        found = self._scripts.get(name)
        if found is None:
            found = self.sync.register_script(load_script(name))
            self._scripts[name] = found
        return found

    async def acall(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run script ``name`` on the running loop's async client.

        The script is loaded once per loop, under a lock, before its first EVALSHA: many
        tasks meeting NOSCRIPT at once on a fresh cluster node can break an async
        cluster connection in redis-py.
        """
        loop = asyncio.get_running_loop()
        table = self._ascripts.setdefault(loop, {})
        script = table.get(name)
        if script is None:
            lock = self._aload_locks.setdefault(loop, asyncio.Lock())
            async with lock:
                script = table.get(name)
                if script is None:
                    client = self.async_client
                    source = load_script(name)
                    script = client.register_script(source)
                    await client.script_load(source)
                    table[name] = script
        return await script(keys=keys, args=args)

    def close(self) -> None:
        """Close the sync client and its connection pool (passed in, so not closed by it)."""
        self.sync.close()
        pool = getattr(self.sync, "connection_pool", None)
        if pool is not None:
            pool.disconnect()

    async def aclose(self) -> None:
        """Close the running loop's async client."""
        loop = asyncio.get_running_loop()
        client = self._async.pop(loop, None)
        self._ascripts.pop(loop, None)
        self._aload_locks.pop(loop, None)
        if client is not None:
            pool = getattr(client, "connection_pool", None)
            await client.aclose()
            if pool is not None:
                await pool.disconnect()


def _embedded(prefix: str, announce: bool) -> Store:
    global _warned_embedded
    import fakeredis  # loaded only when the embedded store is used

    server = fakeredis.FakeServer()
    if announce:
        with _warn_lock:
            if not _warned_embedded:
                _warned_embedded = True
                logger.warning(
                    "REDIS_URL is not set: using the embedded in-process store. Limits hold "
                    "within this process only; set REDIS_URL to share them across processes."
                )
    return Store(
        "embedded",
        "embedded (in-process)",
        fakeredis.FakeRedis(server=server, decode_responses=True),
        lambda: fakeredis.FakeAsyncRedis(server=server, decode_responses=True),
        prefix,
    )


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
    )


def embedded_store(prefix: str) -> Store:
    """A new, private embedded store (the ``local`` fallback when Redis is lost)."""
    return _embedded(prefix, announce=False)
