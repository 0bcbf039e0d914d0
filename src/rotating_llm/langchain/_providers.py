"""The provider's LangChain chat model for each key, built once per key and cached.

``gemini`` keys get ``ChatGoogleGenerativeAI``, ``openai`` keys ``ChatOpenAI`` (any
OpenAI-compatible endpoint); any other provider needs a factory. Provider models are
built with their own retries off: rotation is the pool's job.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from pydantic import SecretStr

from rotating_llm.errors import ConfigError

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
        import httpx  # openai's transport; a client of our own is closed after each async call

        args["http_async_client"] = httpx.AsyncClient()
    return ChatOpenAI(**args)


logger = logging.getLogger("rotating_llm.langchain")

DEFAULT_FACTORIES: dict[str, ProviderFactory] = {"gemini": gemini_model, "openai": openai_model}


class ProviderCache:
    """Provider models per key (and per secret, so a rotated secret gets a new model).

    Async calls get a fresh model each, closed by :meth:`aafter_call`: SDK async clients
    belong to one event loop and leak their sockets when that loop ends.
    """

    def __init__(self, factories: Mapping[str, ProviderFactory]) -> None:
        self.factories = {**DEFAULT_FACTORIES, **{k.lower(): v for k, v in factories.items()}}
        self._sync: dict[tuple[str, ...], BaseChatModel] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ProviderCache(providers={sorted(self.factories)}, models={len(self._sync)})"

    def check_provider(self, provider: str, key_id: str) -> None:
        """Raise :class:`ConfigError` if no factory builds ``provider``'s models."""
        if provider not in self.factories:
            raise ConfigError(
                f"key {key_id!r} has provider {provider!r}, which needs a factory: pass "
                f"provider_factories={{{provider!r}: ...}} (built in: {sorted(self.factories)})"
            )

    @staticmethod
    def _cache_key(spec: ProviderSpec) -> tuple[str, ...]:
        """Everything that shapes the built model: a copy with another temperature (or
        max_tokens, timeout, model_kwargs) must not reuse a model built for the first."""
        digest = hashlib.sha256(spec.api_key.get_secret_value().encode()).hexdigest()[:24]
        shaping = json.dumps(
            [spec.temperature, spec.max_tokens, spec.timeout, dict(spec.model_kwargs)],
            sort_keys=True,
            default=repr,
        )
        return (spec.key_id, spec.model, spec.base_url or "", digest, shaping)

    def _build(self, spec: ProviderSpec) -> BaseChatModel:
        self.check_provider(spec.provider, spec.key_id)
        try:
            model = self.factories[spec.provider](spec)
        except ConfigError:
            raise
        except Exception as exc:
            detail = str(exc).replace(spec.api_key.get_secret_value(), "***")
            raise ConfigError(
                f"cannot build the {spec.provider!r} chat model for key {spec.key_id!r}: "
                f"{type(exc).__name__}: {detail}"
            ) from exc
        if not isinstance(model, BaseChatModel):
            raise ConfigError(
                f"the factory for provider {spec.provider!r} returned "
                f"{type(model).__name__}, not a LangChain BaseChatModel"
            )
        return model

    def get(self, spec: ProviderSpec, *, use_async: bool = False) -> BaseChatModel:
        """The cached model for ``spec``, built on first use (``use_async``: a new one)."""
        if use_async:
            return self._build(spec)
        key = self._cache_key(spec)
        with self._lock:
            table = self._sync
            found = table.get(key)
            if found is None:
                stale = [k for k in table if k[0] == spec.key_id and k != key]
                for k in stale:  # the secret was rotated: forget the old client
                    del table[k]
                found = table[key] = self._build(spec)
            return found

    @staticmethod
    async def aafter_call(model: BaseChatModel) -> None:
        """Close the async connections of ``model`` (built for one async call)."""
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

    def clear(self) -> None:
        """Forget every cached model."""
        with self._lock:
            self._sync.clear()
