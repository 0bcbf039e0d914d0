"""A Redis deployment (server, cluster or the embedded in-process store) and its clients."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import weakref
from collections.abc import Sequence
from importlib import resources
from typing import Any, Literal

import redis
from redis.exceptions import NoPermissionError, NoScriptError

from rotating_llm.errors import ConfigError
from rotating_llm.storage._adirect import LoopConnection
from rotating_llm.storage._cluster_bound import ClusterBound, ping_primaries
from rotating_llm.storage._direct import DirectConnections, ping_fresh
from rotating_llm.storage._timing import Liveness, Timing, deadline_of

__all__ = [
    "FUNCTION_SCRIPTS",
    "Store",
    "function_name",
    "is_missing",
    "load_library",
    "load_script",
    "script_sha",
]

logger = logging.getLogger("rotating_llm.storage")

StoreKind = Literal["redis", "cluster", "embedded"]

_STANDALONE = frozenset({"user_limit"})  # scripts without the pool prelude
#: Scripts on the pool prelude: also served as functions of one library (Redis 7+).
FUNCTION_SCRIPTS = (
    "acquire",
    "count",
    "health",
    "learn",
    "queue",
    "register",
    "replay",
    "settle",
    "status",
)
_script_cache: dict[str, str] = {}
_sha_cache: dict[str, str] = {}
_library: tuple[str, str] | None = None
_function_names: dict[str, str] = {}
_warned_embedded = False
_warn_lock = threading.Lock()


def _lua(name: str) -> str:
    return (resources.files("rotating_llm.limiter") / "lua" / f"{name}.lua").read_text(
        encoding="utf-8"
    )


def _header() -> str:
    from rotating_llm.limiter._schema import lua_header

    return lua_header()


def load_script(name: str) -> str:
    """The Lua source of script ``name`` for EVAL: the schema's names, the shared prelude,
    then the script."""
    if name not in _script_cache:
        body = _lua(name)
        if name in _STANDALONE:
            _script_cache[name] = body
        else:
            _script_cache[name] = (
                f"local KEYS_, ARGV_ = KEYS, ARGV\n{_header()}{_lua('_prelude')}\n"
                f"begin(KEYS_, ARGV_)\n{body}"
            )
    return _script_cache[name]


def load_library() -> tuple[str, str]:
    """``(name, source)`` of the function library: the prelude once, each script a function.

    The name carries a digest of the source, so processes of different versions sharing
    one Redis each call their own functions.
    """
    global _library
    if _library is None:
        parts = [_header() + _lua("_prelude")]
        for name in FUNCTION_SCRIPTS:
            parts.append(
                f"redis.register_function('@LIB@_{name}', function(keys_, args_)\n"
                f"begin(keys_, args_)\n{_lua(name)}\nend)\n"
            )
        code = "\n".join(parts)
        lib = "rllm_" + hashlib.sha1(code.encode(), usedforsecurity=False).hexdigest()[:16]
        _library = (lib, f"#!lua name={lib}\n" + code.replace("@LIB@", lib))
    return _library


def function_name(name: str) -> str:
    """The FCALL name of script ``name``."""
    found = _function_names.get(name)
    if found is None:
        found = _function_names[name] = f"{load_library()[0]}_{name}"
    return found


def is_missing(exc: Exception) -> bool:
    """True if ``exc`` says a script or function is not loaded (restart, flush)."""
    return isinstance(exc, NoScriptError) or _function_missing(exc)


def _function_missing(exc: Exception) -> bool:
    text = str(exc).lower()
    return "function not found" in text or ("unknown command" in text and "fcall" in text)


def script_sha(name: str) -> str:
    """SHA1 of script ``name`` (what EVALSHA names it by)."""
    sha = _sha_cache.get(name)
    if sha is None:
        digest = hashlib.sha1(load_script(name).encode(), usedforsecurity=False)
        sha = _sha_cache[name] = digest.hexdigest()
    return sha


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
        timing: Timing | None = None,
    ) -> None:
        self.kind: StoreKind = kind
        self.description = description
        self.prefix = prefix
        self.sync: redis.Redis = sync_client
        self._async_factory = async_factory
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )
        self._pool_keys: dict[str, list[str]] = {}
        #: Pool scripts run as functions (FCALL): on a Redis server until it refuses them.
        self._functions = kind == "redis"
        self.timing = timing or Timing()
        #: tells a slow Redis server (or cluster) from a lost one
        self.liveness = Liveness(self.probe, self.timing)
        #: a cluster's calls: each bounded by its caller's deadline (no per-call timeout)
        self._bound = ClusterBound(description, self.liveness) if kind == "cluster" else None
        #: script calls on a Redis server: each thread's own connection
        self._direct = (
            DirectConnections(sync_client, self.liveness, description) if kind == "redis" else None
        )
        #: script calls on a Redis server from a loop: that loop's one pipelined connection
        self._adirect: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopConnection] = (
            weakref.WeakKeyDictionary()
        )
        self._aload_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        self._aloaded: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, set[str]] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        return f"Store(kind={self.kind!r}, at={self.description!r}, prefix={self.prefix!r})"

    def probe(self, timeout: float) -> None:
        """``PING`` on a fresh connection within ``timeout`` seconds (redis-py's
        ``ConnectionError`` if refused, ``TimeoutError`` if silent)."""
        if self.kind == "redis":
            ping_fresh(self.sync, timeout)
        elif self.kind == "cluster":
            ping_primaries(self.sync, timeout)
        else:
            self.sync.ping()

    @property
    def is_embedded(self) -> bool:
        """True for the in-process store (limits hold per process only)."""
        return self.kind == "embedded"

    def pool_keys(self, pool: str) -> list[str]:
        """``KEYS`` of every limiter script for ``pool``: its availability set and config."""
        found = self._pool_keys.get(pool)
        if found is None:
            if "{" in pool or "}" in pool:
                raise ConfigError(f"model name {pool!r} must not contain '{{' or '}}'")
            from rotating_llm.limiter._schema import pool_base  # (the limiter imports us)

            base = pool_base(self.prefix, pool)
            found = self._pool_keys[pool] = [base + "avail", base + "cfg"]
        return found

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

    # -- scripts ------------------------------------------------------------------------
    #
    # On a Redis server the pool scripts run as functions of one library (FCALL): the
    # prelude is then set up once per load, not on every call. A server that cannot
    # load functions (before 7.0, or an ACL without FUNCTION) gets EVALSHA, as do the
    # cluster (redis-py asks the server for an FCALL's keys on every call) and the
    # embedded store.

    def command(self, name: str) -> tuple[str, str]:
        """``("FCALL", function)`` or ``("EVALSHA", sha)`` for script ``name`` now."""
        if self._functions and name in FUNCTION_SCRIPTS:
            return "FCALL", function_name(name)
        return "EVALSHA", script_sha(name)

    def reload(self, name: str, exc: Exception) -> bool:
        """After ``exc`` (a reply to script ``name``): load what was missing; False if
        ``exc`` is not about a missing script or function."""
        if isinstance(exc, NoScriptError):
            self.sync.script_load(load_script(name))  # every primary, on a cluster
            return True
        if not self._functions:
            return False
        if not _function_missing(exc):
            if not isinstance(exc, NoPermissionError):
                return False
            self._no_functions(exc)  # an ACL that allows scripts but not FCALL
            return True
        try:
            self.sync.function_load(load_library()[1], replace=True)
        except redis.ResponseError as err:  # too old, or not allowed to load them
            self._no_functions(err)
        return True

    def _no_functions(self, why: Exception) -> None:
        logger.info("Redis functions unavailable (%s); using EVALSHA", why)
        self._functions = False

    def call(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run script ``name`` on the sync client, loading it once if it is missing."""
        if self._bound is not None:
            until = deadline_of(self.timing)  # (the caller's: a context variable)
            return self._bound.run(lambda: self._call(name, keys, args), until)
        return self._call(name, keys, args)

    def _call(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        send = self._direct.execute if self._direct else self.sync.execute_command
        for attempt in (1, 2, 3):
            cmd, ref = self.command(name)
            try:
                return send(cmd, ref, len(keys), *keys, *args)
            except redis.ResponseError as exc:
                if attempt == 3 or not self.reload(name, exc):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def acall(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run script ``name`` on the running loop's async client.

        A script is loaded once per loop, under a lock, before its first EVALSHA: many
        tasks meeting NOSCRIPT at once on a fresh cluster node can break an async
        cluster connection in redis-py.
        """
        if self._bound is not None:
            until = deadline_of(self.timing)  # (the caller's: a context variable)
            return await self._bound.arun(lambda: self._acall(name, keys, args), until)
        return await self._acall(name, keys, args)

    async def _acall(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        loop = asyncio.get_running_loop()
        client = self.async_client
        if self.command(name)[0] == "EVALSHA":
            loaded = self._aloaded.setdefault(loop, set())
            if name not in loaded:
                lock = self._aload_locks.setdefault(loop, asyncio.Lock())
                async with lock:
                    if name not in loaded:
                        await client.script_load(load_script(name))
                        loaded.add(name)
        send = client.execute_command
        if self.kind == "redis":
            direct = self._adirect.get(loop)
            if direct is None:
                direct = self._adirect[loop] = LoopConnection(
                    client, self.liveness, self.description
                )
            send = direct.execute
        for attempt in (1, 2, 3):
            cmd, ref = self.command(name)
            try:
                return await send(cmd, ref, len(keys), *keys, *args)
            except redis.ResponseError as exc:
                if attempt == 3 or not await asyncio.to_thread(self.reload, name, exc):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close the sync client and its connection pool (passed in, so not closed by it)."""
        if self._direct:
            self._direct.close()
        if self._bound is not None:
            self._bound.close()
        self.sync.close()
        pool = getattr(self.sync, "connection_pool", None)
        if pool is not None:
            pool.disconnect()

    async def aclose(self) -> None:
        """Close the running loop's async client."""
        loop = asyncio.get_running_loop()
        client = self._async.pop(loop, None)
        direct = self._adirect.pop(loop, None)
        if direct is not None:
            await direct.close()
        self._aloaded.pop(loop, None)
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


def embedded_store(prefix: str) -> Store:
    """A new, private embedded store (the ``local`` fallback when Redis is lost)."""
    return _embedded(prefix, announce=False)
