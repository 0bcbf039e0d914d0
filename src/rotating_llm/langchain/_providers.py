"""The provider's LangChain chat model for each key, built once per key and cached.

``gemini`` keys get ``ChatGoogleGenerativeAI``, ``openai`` keys ``ChatOpenAI`` (any
OpenAI-compatible endpoint); any other provider needs a factory. Provider models are
built with their own retries off: rotation is the pool's job.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import threading
import weakref
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from langchain_core.language_models import BaseChatModel
from pydantic import SecretStr

from rotating_llm._scrub import scrub_exception
from rotating_llm.errors import ConfigError

if TYPE_CHECKING:
    from rotating_llm.keys import APIKey

__all__ = ["ProviderCache", "ProviderFactory", "ProviderSpec", "gemini_model", "openai_model"]


@dataclass(frozen=True)
class ProviderSpec:
    """Everything a factory needs to build one key's chat model.

    Attributes:
        key_id: The key.
        provider: Its provider (``gemini``, ``openai``, ...).
        model: The provider's model name (the key's ``model_name``).
        api_key: The secret. Pass it to the model; never log it.
        base_url: Endpoint (the key's own wins over the chat model's), or ``None``.
        temperature: Sampling temperature, if set.
        max_tokens: Completion limit, if set.
        timeout: Request timeout in seconds, if set.
        model_kwargs: Further constructor arguments for the provider model.
    """

    key_id: str
    provider: str
    model: str
    api_key: SecretStr = field(repr=False)
    base_url: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    timeout: float | None = None
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)


#: Builds a provider chat model (with its own retries off) for one key.
ProviderFactory = Callable[[ProviderSpec], BaseChatModel]


def _common(spec: ProviderSpec) -> dict[str, Any]:
    args: dict[str, Any] = {"model": spec.model}
    for name in ("temperature", "max_tokens", "timeout", "base_url"):
        value = getattr(spec, name)
        if value is not None:
            args[name] = value
    return args


def gemini_model(spec: ProviderSpec) -> BaseChatModel:
    """``ChatGoogleGenerativeAI`` for a ``gemini`` key (SDK retries off: ``max_retries=1``)."""
    from langchain_google_genai import ChatGoogleGenerativeAI

    args = _common(spec)
    args.update(spec.model_kwargs)
    args.update(api_key=spec.api_key, max_retries=1)  # 1 = one try; 0 = the SDK's default
    return ChatGoogleGenerativeAI(**args)


def openai_model(spec: ProviderSpec) -> BaseChatModel:
    """``ChatOpenAI`` for an ``openai`` key or OpenAI-compatible endpoint (``max_retries=0``)."""
    from langchain_openai import ChatOpenAI

    args = _common(spec)
    args["stream_usage"] = True
    args["include_response_headers"] = True  # x-ratelimit-* (rotating_llm.learning)
    args.update(spec.model_kwargs)
    args.update(api_key=spec.api_key, max_retries=0)
    if "http_async_client" not in spec.model_kwargs:
        import httpx  # openai's transport; ours is closed with the cached model (aclose_model)

        args["http_async_client"] = httpx.AsyncClient()
    return ChatOpenAI(**args)


logger = logging.getLogger("rotating_llm.langchain")

DEFAULT_FACTORIES: dict[str, ProviderFactory] = {"gemini": gemini_model, "openai": openai_model}

#: Provider models kept per table (the sync one, and one per event loop), least recent out.
MAX_MODELS = 256
#: Seconds a dropped async model (key removed or rotated, LRU) stays open before it is
#: closed: calls still streaming through it finish first.
RETIRE_SECONDS = 600.0

_CacheKey = tuple[str, ...]
_GONE = object()


class _KeysSource(Protocol):
    """What the cache reads of a key manager: its keys and a counter of their changes."""

    @property
    def keys_version(self) -> int: ...

    @property
    def keys(self) -> list[APIKey]: ...


class _Table:
    """One table of built models (LRU), with the key version it was checked against."""

    def __init__(self) -> None:
        self.models: OrderedDict[_CacheKey, BaseChatModel] = OrderedDict()
        self.version = -1
        self.keys: dict[str, APIKey] = {}


class _LoopTable(_Table):
    """The models of one event loop, the builds in flight and models waiting to be closed."""

    def __init__(self) -> None:
        super().__init__()
        self.building: dict[_CacheKey, asyncio.Task[BaseChatModel]] = {}
        self.closing: set[asyncio.Task[None]] = set()
        self.retired: deque[tuple[float, BaseChatModel]] = deque()  # (dropped at, model)
        self.guard: AsyncGenerator[None, None] | None = None


class ProviderCache:
    """Provider models per key, built once and reused: one table for sync calls, one per
    event loop for async calls (SDK async clients belong to the loop they first ran on).

    An entry is keyed by the key id, provider, model, base URL, a keyed digest of the
    secret (a rotated secret builds a new model) and every shaping setting. Tables hold at
    most :data:`MAX_MODELS` models (least recently used out); a key removed or changed in
    the manager (removed, or replaced as ``reload_keys`` and ``set_keys`` do; seen by its
    ``keys_version``) drops its models. Async builds run in a worker thread
    (building reads certificates and creates SDK clients: tens of milliseconds), and
    concurrent first calls for one entry share one build. Evicted async models are
    closed on their loop; a loop's models are closed when the loop shuts down its async
    generators (``asyncio.run`` does) or by :meth:`aclose`.
    """

    def __init__(
        self,
        factories: Mapping[str, ProviderFactory],
        *,
        keys: _KeysSource | None = None,
        max_models: int = MAX_MODELS,
    ) -> None:
        self.factories = {**DEFAULT_FACTORIES, **{k.lower(): v for k, v in factories.items()}}
        self.max_models = max(1, int(max_models))
        self._source = keys
        self._salt = os.urandom(32)  # the digest of a secret is of no use outside this cache
        self._sync = _Table()
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopTable] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self.builds = 0
        """Models built so far (sync and async)."""

    def __repr__(self) -> str:
        with self._lock:
            loops = list(self._loops.values())
        cached = sum(len(t.models) for t in loops)
        return (
            f"ProviderCache(providers={sorted(self.factories)}, models={len(self._sync.models)}, "
            f"async_models={cached}, loops={len(loops)}, builds={self.builds})"
        )

    def check_provider(self, provider: str, key_id: str) -> None:
        """Raise :class:`ConfigError` if no factory builds ``provider``'s models."""
        if provider not in self.factories:
            raise ConfigError(
                f"key {key_id!r} has provider {provider!r}, which needs a factory: pass "
                f"provider_factories={{{provider!r}: ...}} (built in: {sorted(self.factories)})"
            )

    def _cache_key(self, spec: ProviderSpec) -> _CacheKey:
        """Everything that shapes the built model: a copy with another temperature (or
        max_tokens, timeout, model_kwargs) must not reuse a model built for the first."""
        secret = spec.api_key.get_secret_value().encode()
        digest = hashlib.blake2b(secret, key=self._salt, digest_size=16).hexdigest()
        shaping = json.dumps(
            [spec.temperature, spec.max_tokens, spec.timeout, dict(spec.model_kwargs)],
            sort_keys=True,
            default=repr,
        ).encode()
        # model_kwargs may hold a secret of their own (default_headers): digested too
        shaped = hashlib.blake2b(shaping, key=self._salt, digest_size=16).hexdigest()
        return (spec.key_id, spec.provider, spec.model, spec.base_url or "", digest, shaped)

    def _build(self, spec: ProviderSpec) -> BaseChatModel:
        self.check_provider(spec.provider, spec.key_id)
        try:
            model = self.factories[spec.provider](spec)
        except ConfigError:
            raise
        except Exception as exc:
            secret = spec.api_key.get_secret_value()
            scrub_exception(exc, [secret])  # the chained SDK error holds no key either
            detail = str(exc).replace(secret, "***")
            raise ConfigError(
                f"cannot build the {spec.provider!r} chat model for key {spec.key_id!r}: "
                f"{type(exc).__name__}: {detail}"
            ) from exc
        if not isinstance(model, BaseChatModel):
            raise ConfigError(
                f"the factory for provider {spec.provider!r} returned "
                f"{type(model).__name__}, not a LangChain BaseChatModel"
            )
        with self._lock:
            self.builds += 1
        return model

    def _stale(self, table: _Table) -> list[BaseChatModel]:
        """Drop (and return) ``table``'s models of keys removed or changed since it was
        last checked; ``keys_version`` makes the check one integer comparison."""
        if self._source is None:
            return []
        version = self._source.keys_version
        if version == table.version:
            return []
        now = {k.key_id: k for k in self._source.keys}
        before, table.version, table.keys = table.keys, version, now
        # by value: a reload that leaves a key as it was keeps its models
        gone = [ck for ck in table.models if before.get(ck[0]) != now.get(ck[0], _GONE)]
        return [table.models.pop(ck) for ck in gone]

    def _put(self, table: _Table, key: _CacheKey, model: BaseChatModel) -> list[BaseChatModel]:
        """Store ``model``; return what fell out (stale keys, the LRU bound)."""
        out = self._stale(table)
        table.models[key] = model
        table.models.move_to_end(key)
        while len(table.models) > self.max_models:
            out.append(table.models.popitem(last=False)[1])
        return out

    # -- sync -------------------------------------------------------------------------

    def get(self, spec: ProviderSpec) -> BaseChatModel:
        """The model for ``spec`` in sync calls, built on first use."""
        key = self._cache_key(spec)
        with self._lock:
            table = self._sync
            self._stale(table)
            found = table.models.get(key)
            if found is not None:
                table.models.move_to_end(key)
                return found
        model = self._build(spec)  # outside the lock: a slow factory holds up no one else
        with self._lock:
            found = table.models.get(key)
            if found is not None:  # another thread built it meanwhile: keep one
                return found
            self._forget_rotated(table, spec.key_id, key)
            self._put(table, key, model)
            return model

    @staticmethod
    def _forget_rotated(table: _Table, key_id: str, key: _CacheKey) -> list[BaseChatModel]:
        """The secret of ``key_id`` changed: its models built with the old one go."""
        old = [ck for ck in table.models if ck[0] == key_id and ck[4] != key[4]]
        return [table.models.pop(ck) for ck in old]

    # -- async ------------------------------------------------------------------------

    def _loop_table(self, loop: asyncio.AbstractEventLoop) -> _LoopTable:
        with self._lock:
            table = self._loops.get(loop)
            if table is None:
                table = self._loops[loop] = _LoopTable()
            return table

    async def aget(self, spec: ProviderSpec) -> BaseChatModel:
        """The model for ``spec`` on the running loop, built in a worker thread on first
        use; concurrent first calls share one build."""
        key = self._cache_key(spec)
        table = self._loop_table(asyncio.get_running_loop())
        if table.guard is None:
            await self._guard(table)
        self._close_later(table, self._stale(table))
        found = table.models.get(key)
        if found is not None:
            table.models.move_to_end(key)
            return found
        task = table.building.get(key)
        if task is None:
            task = asyncio.ensure_future(self._abuild(table, spec, key))
            table.building[key] = task
        return await asyncio.shield(task)

    async def _abuild(self, table: _LoopTable, spec: ProviderSpec, key: _CacheKey) -> BaseChatModel:
        try:
            model = await asyncio.to_thread(self._build, spec)
        finally:
            table.building.pop(key, None)
        with self._lock:
            current = self._loops.get(asyncio.get_running_loop()) is table
        if not current:  # aclose() ran meanwhile: the caller uses it uncached
            return model
        self._close_later(table, self._forget_rotated(table, spec.key_id, key))
        self._close_later(table, self._put(table, key, model))
        return model

    async def _guard(self, table: _LoopTable) -> None:
        """An async generator parked on the loop: the loop's ``shutdown_asyncgens`` (run
        by ``asyncio.run`` before it closes the loop) finalises it, closing the models."""

        async def parked() -> AsyncGenerator[None, None]:
            try:
                yield
            finally:
                await self._aclose_table(table)

        table.guard = parked()
        await table.guard.asend(None)

    def _close_later(self, table: _LoopTable, models: list[BaseChatModel]) -> None:
        """Retire ``models``: a call may still be using one (a stream, a slow answer), so
        each is closed :data:`RETIRE_SECONDS` after it was dropped, or with its loop."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        table.retired.extend((now, m) for m in models)
        while table.retired and now - table.retired[0][0] >= RETIRE_SECONDS:
            task = asyncio.ensure_future(aclose_model(table.retired.popleft()[1]))
            table.closing.add(task)
            task.add_done_callback(table.closing.discard)

    async def _aclose_table(self, table: _LoopTable) -> None:
        models = [*table.models.values(), *(m for _, m in table.retired)]
        table.models.clear()
        table.retired.clear()
        for model in models:
            await aclose_model(model)
        if table.closing:
            await asyncio.gather(*list(table.closing), return_exceptions=True)

    async def aclose(self) -> None:
        """Close and drop the running loop's models, and drop the sync ones."""
        loop = asyncio.get_running_loop()
        with self._lock:
            table = self._loops.pop(loop, None)
        if table is not None and table.guard is not None:
            await table.guard.aclose()  # its finally closes the table's models
        elif table is not None:
            await self._aclose_table(table)
        self.clear()

    def clear(self) -> None:
        """Forget the sync models (async ones are closed by :meth:`aclose`)."""
        with self._lock:
            self._sync.models.clear()

    def cached(self) -> list[tuple[str, str]]:
        """``(key_id, model)`` of each model held for sync calls, least recent first."""
        with self._lock:
            self._stale(self._sync)
            return [(ck[0], ck[2]) for ck in self._sync.models]

    async def acached(self) -> list[tuple[str, str]]:
        """``(key_id, model)`` of each model held for the running loop's calls."""
        with self._lock:
            table = self._loops.get(asyncio.get_running_loop())
        if table is None:
            return []
        self._close_later(table, self._stale(table))
        return [(ck[0], ck[2]) for ck in table.models]


async def aclose_model(model: BaseChatModel) -> None:
    """Close the async connections of ``model`` (best effort)."""
    closers = [
        getattr(getattr(getattr(model, "client", None), "aio", None), "aclose", None),
        getattr(getattr(model, "http_async_client", None), "aclose", None),
    ]
    for aclose in closers:
        if aclose is None:
            continue
        try:
            await aclose()
        except Exception:  # closing is best effort; the call itself succeeded or failed
            logger.debug("could not close the async client of %s", type(model).__name__)
