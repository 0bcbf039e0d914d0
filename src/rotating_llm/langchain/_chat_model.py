"""``RotatingChatModel``: a LangChain chat model over a pool of API keys for one model."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    model_validator,
)

from rotating_llm._bounds import check_priority, check_tenant
from rotating_llm.config import Settings
from rotating_llm.errors import AllKeysExhaustedError, ConfigError, RotatingLLMError
from rotating_llm.keys import APIKey, KeyManager, Lease
from rotating_llm.langchain._call import call_attempts
from rotating_llm.langchain._errors import classify
from rotating_llm.langchain._providers import ProviderCache, ProviderFactory, ProviderSpec
from rotating_llm.langchain._rotation import (
    Attempts,
    achunks,
    annotate,
    annotate_result,
    answer_facts,
    chunks,
    usage_tokens,
)
from rotating_llm.langchain._structured import STRUCTURED_KWARG, provider_kwargs, structured
from rotating_llm.secrets import SecretStore
from rotating_llm.tokens import aprepare

__all__ = ["RotatingChatModel"]


class RotatingChatModel(BaseChatModel):
    """A chat model that spreads requests over every API key of one model's pool.

    Each call leases a key from the :class:`~rotating_llm.KeyManager` (atomic Redis
    reservation), sends the request with that key's provider model
    (``ChatGoogleGenerativeAI`` for ``gemini``, ``ChatOpenAI`` for ``openai``, a factory
    for others) and settles the lease with the real token usage. Failures follow
    the failure table (docs/design.md); ``response_metadata`` names the ``key_id`` and ``attempts``.

    Example:
        >>> llm = RotatingChatModel(model="gemini-2.5-flash", keys="keys.json")  # doctest: +SKIP
        >>> llm.invoke("Hello").response_metadata["key_id"]  # doctest: +SKIP
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, populate_by_name=True)

    model: str = Field(alias="model_name")
    """The pool: every active key whose ``model_name`` is this."""
    key_manager: KeyManager | None = Field(default=None, exclude=True, repr=False)
    """The pool's manager. Give this, or ``keys``."""
    keys: str | Path | list[APIKey] | None = Field(default=None, exclude=True, repr=False)
    """A keys file, or the keys themselves (a manager is built for them)."""
    redis_url: str | None = Field(default=None, exclude=True, repr=False)
    """Redis for a manager built from ``keys`` (default: ``REDIS_URL``)."""
    secret_store: SecretStore | None = Field(default=None, exclude=True, repr=False)
    """Secret store for a manager built from ``keys`` (default: ``SECRET_STORE_TYPE``)."""
    max_wait: float | None = Field(default=None, ge=0)
    """Seconds to wait for capacity (0: fail at once; default: the manager's setting)."""
    max_attempts: int = Field(default=5, ge=1)
    """Provider calls per request, across keys."""
    max_retries: int | None = Field(default=None, ge=0)
    """LangChain's standard parameter: when set, ``max_attempts = max_retries + 1``."""
    temperature: float | None = None
    max_tokens: int | None = Field(default=None, gt=0)
    timeout: float | None = Field(default=None, gt=0)
    base_url: str | None = None
    """Endpoint for keys without their own ``base_url``."""
    stop: list[str] | None = Field(default=None, alias="stop_sequences")
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Further constructor arguments for every provider model."""
    provider_factories: dict[str, ProviderFactory] = Field(
        default_factory=dict, exclude=True, repr=False
    )
    """``provider -> factory(ProviderSpec) -> BaseChatModel`` for providers beyond the
    built-in ``gemini`` and ``openai`` (or to replace them)."""
    streaming: bool = False
    """``invoke`` streams from the provider and gathers the chunks."""
    api_key: SecretStr | None = Field(default=None, exclude=True, repr=False)
    """Accepted for LangChain's standard parameters and dropped: secrets come from the
    pool's secret store."""
    backoff_base: float = Field(default=0.25, gt=0)
    """First delay after a model-side failure (doubles, jittered, up to ``backoff_max``)."""
    backoff_max: float = Field(default=4.0, gt=0)
    first_key_only: bool = False
    """Lease only the first active key of the pool (no rotation across keys)."""
    sticky_keys: bool | None = None
    """Lease the key that last served the run's conversation (``session_id`` of
    ``RunnableWithMessageHistory``, ``conversation_id``, ``thread_id``) while it has room;
    ``None``: the manager's ``sticky_keys`` setting. A call's ``affinity=`` wins."""
    affinity: str | None = Field(default=None, min_length=1)
    """One conversation id for every call of this model (a call's ``affinity=`` wins;
    the run's own conversation is not looked for then)."""
    priority: int = Field(default=0, strict=True)
    """The calls' priority when the pool is scarce (-1000..1000, higher first; a call's
    ``priority=`` wins)."""
    tenant: str | None = None
    """Whose calls these are, for per-tenant fair shares (a call's ``tenant=`` wins)."""

    _manager: KeyManager = PrivateAttr()
    _providers: ProviderCache = PrivateAttr()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Build the model; every construction error is the library's own.

        Raises:
            ConfigError: a bad argument (a ``ValueError``); ``KeyFileError`` for a bad
                keys file, ``SecretStoreError`` for a secret store that cannot be built.
        """
        try:
            super().__init__(*args, **kwargs)
        except ValidationError as exc:
            raise _own_error(exc) from None

    @model_validator(mode="after")
    def _setup(self) -> RotatingChatModel:
        self.api_key = None
        check_priority(self.priority, ConfigError)
        check_tenant(self.tenant, ConfigError)
        if self.max_retries is not None:
            self.max_attempts = self.max_retries + 1
        for name in ("temperature", "max_tokens", "timeout", "base_url", "stop"):
            if name in self.model_kwargs:
                raise ConfigError(f"pass {name!r} directly, not in model_kwargs")
        if self.key_manager is not None and self.keys is not None:
            raise ConfigError("give key_manager= or keys=, not both")
        if self.key_manager is not None:
            manager = self.key_manager
        elif self.keys is not None:
            settings = Settings.from_env(redis_url=self.redis_url)
            if isinstance(self.keys, (str, Path)):
                manager = KeyManager(
                    key_store_path=self.keys, settings=settings, secret_store=self.secret_store
                )
            else:
                manager = KeyManager(self.keys, settings=settings, secret_store=self.secret_store)
        else:
            raise ConfigError("RotatingChatModel needs key_manager= or keys= (file or list)")
        self._manager = manager
        self._providers = ProviderCache(self.provider_factories, keys=manager)
        pool = [k for k in manager.keys if k.active and k.model_name == self.model]
        if not pool:
            raise ConfigError(
                f"no active keys for model {self.model!r}; models: {manager.models()}"
            )
        for key in manager.keys:
            self._providers.check_provider(key.provider, key.key_id)
        return self

    def close(self) -> None:
        """Drop the provider models built for sync calls (the manager stays open)."""
        self._providers.clear()

    async def aclose(self) -> None:
        """Close and drop the provider models of the running loop (and the sync ones).

        The manager stays open: it may serve other models; close it on its own.
        """
        await self._providers.aclose()

    # -- LangChain plumbing -----------------------------------------------------------

    @property
    def manager(self) -> KeyManager:
        """The pool's :class:`KeyManager`."""
        return self._manager

    @property
    def _llm_type(self) -> str:
        return "rotating-llm"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "max_attempts": self.max_attempts,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="rotating_llm",
            ls_model_name=str(kwargs.get("model") or self.model),
            ls_model_type="chat",
        )
        temperature = kwargs.get("temperature", self.temperature)
        if temperature is not None:
            params["ls_temperature"] = temperature
        max_tokens = kwargs.get("max_tokens", self.max_tokens)
        if max_tokens is not None:
            params["ls_max_tokens"] = max_tokens
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | bool | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (any form ``convert_to_openai_tool`` takes); each provider model
        formats them its own way when a key of its provider serves the call."""
        formatted = [convert_to_openai_tool(t) for t in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        include_raw: bool = False,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """Structured output by ``method`` (``function_calling`` default, ``json_schema``,
        ``json_mode``); the serving key's provider model shapes the request."""
        method = kwargs.pop("method", None) or "function_calling"
        strict = kwargs.pop("strict", None)
        if kwargs:
            raise ConfigError(f"with_structured_output: unsupported arguments {sorted(kwargs)}")
        if method == "function_calling":
            return super().with_structured_output(schema, include_raw=include_raw)
        return structured(self, schema, method=method, strict=strict, include_raw=include_raw)

    # -- one call ---------------------------------------------------------------------

    def _attempts(self, messages: Sequence[BaseMessage], kwargs: dict[str, Any]) -> Attempts:
        """The attempts of one call (its own keywords taken out of ``kwargs``)."""
        return call_attempts(self, messages, kwargs)

    def _spec(self, lease: Lease) -> ProviderSpec:
        return ProviderSpec(
            key_id=lease.key_id,
            provider=lease.provider,
            model=lease.model_name,
            api_key=lease.api_key,
            base_url=lease.base_url or self.base_url,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            timeout=self.timeout,
            model_kwargs=self.model_kwargs,
        )

    @staticmethod
    def _call_kwargs(inner: BaseChatModel, kwargs: dict[str, Any]) -> dict[str, Any]:
        out = dict(kwargs)
        request = out.pop(STRUCTURED_KWARG, None)
        if request is not None:
            out = {**provider_kwargs(inner, request), **out}
        tools = out.pop("tools", None)
        if tools is not None:
            choice = out.pop("tool_choice", None)
            extra = {} if choice is None else {"tool_choice": choice}
            bound = inner.bind_tools(tools, **extra)
            out = {**getattr(bound, "kwargs", {}), **out}
        return out

    def _excluded(self, pool: str) -> list[str]:
        """Keys this call must not lease: with ``first_key_only``, all but the first."""
        if not self.first_key_only:
            return []
        active = [k.key_id for k in self._manager.keys if k.active and k.model_name == pool]
        return active[1:]

    def _lease(
        self, att: Attempts, kwargs: dict[str, Any]
    ) -> tuple[Lease, BaseChatModel, dict[str, Any]]:
        """A lease, its key's provider model and the call's keywords for that model."""
        try:
            lease = self._manager.acquire(
                att.pool,
                att.estimated_tokens,
                max_wait=att.remaining_wait,
                exclude=self._excluded(att.pool),
                affinity=att.affinity,
                priority=att.priority,
                tenant=att.tenant,
            )
        except AllKeysExhaustedError as exc:
            raise att.exhausted(exc) from exc
        att.count += 1
        try:
            inner = self._providers.get(self._spec(lease))
            return lease, inner, self._call_kwargs(inner, kwargs)
        except BaseException:  # nothing was sent: the reservation is given back
            lease.release()
            raise

    async def _alease(
        self, att: Attempts, kwargs: dict[str, Any]
    ) -> tuple[Lease, BaseChatModel, dict[str, Any]]:
        """Async twin of :meth:`_lease` (the provider model is the running loop's)."""
        try:
            lease = await self._manager.aacquire(
                att.pool,
                att.estimated_tokens,
                max_wait=att.remaining_wait,
                exclude=self._excluded(att.pool),
                affinity=att.affinity,
                priority=att.priority,
                tenant=att.tenant,
            )
        except AllKeysExhaustedError as exc:
            raise att.exhausted(exc) from exc
        att.count += 1
        try:
            inner = await self._providers.aget(self._spec(lease))
            return lease, inner, self._call_kwargs(inner, kwargs)
        except BaseException:
            await lease.arelease()
            raise

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.streaming:
            from langchain_core.language_models.chat_models import generate_from_stream

            return generate_from_stream(self._stream(messages, stop, run_manager, **kwargs))
        stop = stop or self.stop
        att = self._attempts(messages, kwargs)
        while True:
            lease, inner, call = self._lease(att, kwargs)
            try:
                result = inner._generate(messages, stop=stop, **call)
            except Exception as exc:
                delay = att.decide(lease, exc, classify(exc))
                if delay:
                    time.sleep(delay)
                continue
            lease.complete(usage_tokens(result.generations), facts=answer_facts(result.generations))
            annotate_result(result, lease, att.count)
            return result

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.streaming:
            from langchain_core.language_models.chat_models import agenerate_from_stream

            return await agenerate_from_stream(self._astream(messages, stop, run_manager, **kwargs))
        stop = stop or self.stop
        await aprepare()  # the tokenizer's first load runs in a worker thread
        att = self._attempts(messages, kwargs)
        while True:
            lease, inner, call = await self._alease(att, kwargs)
            try:
                result = await inner._agenerate(messages, stop=stop, **call)
            except Exception as exc:
                delay = await att.adecide(lease, exc, classify(exc))
                if delay:
                    await asyncio.sleep(delay)
                continue
            await lease.acomplete(
                usage_tokens(result.generations), facts=answer_facts(result.generations)
            )
            annotate_result(result, lease, att.count)
            return result

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        stop = stop or self.stop
        att = self._attempts(messages, kwargs)
        while True:
            lease, inner, call = self._lease(att, kwargs)
            seen: list[ChatGenerationChunk] = []
            try:
                for chunk in chunks(inner, messages, stop, call):
                    if not seen:
                        annotate(chunk.message, lease, att.count)
                    seen.append(chunk)
                    yield chunk
            except Exception as exc:
                found = classify(exc)
                if seen:  # the caller has chunks of this key's answer: never switch
                    lease.fail(
                        found.kind or "server", found.retry_after, found.reason, facts=found.facts
                    )
                    raise att.error(lease, exc, found) from exc
                delay = att.decide(lease, exc, found)
                if delay:
                    time.sleep(delay)
                continue
            finally:
                if not lease.settled:  # completed normally, or the caller stopped early
                    lease.complete(usage_tokens(seen), facts=answer_facts(seen))
            return

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        stop = stop or self.stop
        await aprepare()
        att = self._attempts(messages, kwargs)
        while True:
            lease, inner, call = await self._alease(att, kwargs)
            seen: list[ChatGenerationChunk] = []
            try:
                async for chunk in achunks(inner, messages, stop, call):
                    if not seen:
                        annotate(chunk.message, lease, att.count)
                    seen.append(chunk)
                    yield chunk
            except Exception as exc:
                found = classify(exc)
                if seen:
                    await lease.afail(
                        found.kind or "server", found.retry_after, found.reason, facts=found.facts
                    )
                    raise att.error(lease, exc, found) from exc
                delay = await att.adecide(lease, exc, found)
                if delay:
                    await asyncio.sleep(delay)
                continue
            finally:
                if not lease.settled:
                    await lease.acomplete(usage_tokens(seen), facts=answer_facts(seen))
            return


def _own_error(exc: ValidationError) -> Exception:
    """The library's error behind pydantic's wrapper, else a ``ConfigError`` naming fields."""
    problems = []
    for err in exc.errors(include_url=False, include_input=False):
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, RotatingLLMError):
            return cause
        where = ".".join(str(p) for p in err["loc"]) or "RotatingChatModel"
        problems.append(f"{where}: {err['msg']}")
    return ConfigError("RotatingChatModel: " + "; ".join(problems))
