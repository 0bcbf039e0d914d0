"""One request through the pool: lease a key, call its provider model, act on the answer.

Follows the failure table in docs/design.md: a rate-limited key cools down for the provider's own
delay and the request moves on at once; a refused key is disabled and the request moves
on; model-side failures are retried with jittered backoff; a bad request is not retried.
A stream moves to another key only before its first chunk reached the caller.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk

from rotating_llm._scrub import scrub_exception
from rotating_llm.errors import AllKeysExhaustedError
from rotating_llm.keys import FailureKind, Lease
from rotating_llm.langchain._errors import (
    Classified,
    RotatingRateLimitError,
    exhausted,
    provider_error,
)
from rotating_llm.learning import NO_FACTS, ProviderFacts, parse_headers
from rotating_llm.tokens import (
    Message,
    content_parts,
    estimate_request,
    extra_text,
    tool_call_text,
)

if TYPE_CHECKING:
    from langchain_core.outputs import ChatGeneration, ChatResult

__all__ = [
    "AFFINITY_CONFIG_KEYS",
    "Attempts",
    "achunks",
    "answer_facts",
    "chunks",
    "conversation_id",
    "estimate_tokens",
    "neutral_messages",
    "usage_tokens",
]

#: Where a run's conversation id is found, in its config's ``configurable`` and then its
#: ``metadata``: ``RunnableWithMessageHistory``'s ``session_id``, LangGraph's
#: ``thread_id``, and ``conversation_id`` (LangSmith groups threads by the same names).
AFFINITY_CONFIG_KEYS = ("session_id", "conversation_id", "thread_id")

logger = logging.getLogger("rotating_llm.langchain")


def neutral_messages(messages: Sequence[BaseMessage]) -> list[Message]:
    """LangChain messages in the neutral form of :func:`rotating_llm.tokens.estimate_request`."""
    out = []
    for msg in messages:
        text, media = content_parts(msg.content)
        if isinstance(msg, AIMessage):
            calls = [tool_call_text(tc["name"], tc["args"]) for tc in msg.tool_calls]
            text = "\n".join([text, *calls]) if calls else text
        out.append(Message(role=msg.type, text=text, media=media))
    return out


def estimate_tokens(
    messages: Sequence[BaseMessage], extra: Mapping[str, Any], completion_tokens: int
) -> int:
    """The request's estimate by the one rule of :func:`rotating_llm.tokens.estimate_request`."""
    return estimate_request(neutral_messages(messages), completion_tokens, extra=extra_text(extra))


def usage_tokens(generations: Sequence[ChatGeneration | ChatGenerationChunk]) -> int | None:
    """Total tokens the provider reported in ``usage_metadata``, or ``None``."""
    total: int | None = None
    for gen in generations:
        usage = getattr(gen.message, "usage_metadata", None)
        if usage:
            total = (total or 0) + int(usage.get("total_tokens") or 0)
    return total


def answer_facts(generations: Sequence[ChatGeneration | ChatGenerationChunk]) -> ProviderFacts:
    """What the provider's answer said about the key's limits: its ``x-ratelimit-*``
    headers, which the OpenAI model puts in ``response_metadata["headers"]`` (taken out
    again: the caller did not ask for them, and they may hold cookies)."""
    found: Any = None
    for gen in generations:
        info = gen.generation_info
        if isinstance(info, dict) and isinstance(info.get("headers"), dict):
            found = found or info.pop("headers")
        meta = getattr(gen.message, "response_metadata", None)
        if isinstance(meta, dict) and isinstance(meta.get("headers"), dict):
            found = found or meta.pop("headers")
    return parse_headers(found) if found else NO_FACTS


def conversation_id() -> str | None:
    """The conversation id of the run this call is part of (``None``: none found).

    Read from the config LangChain hands the running call's children (a chat model inside
    ``RunnableWithMessageHistory`` or a chain); the config is only read.
    """
    from langchain_core.runnables.config import ensure_config

    config = ensure_config()
    for section in (config.get("configurable") or {}, config.get("metadata") or {}):
        for name in AFFINITY_CONFIG_KEYS:
            value = section.get(name)
            if isinstance(value, (str, int)) and not isinstance(value, bool) and value != "":
                return str(value)
    return None


def annotate(message: BaseMessage, lease: Lease, attempts: int) -> None:
    """Add ``key_id``, ``attempts``, ``pool`` and, when an affinity was asked,
    ``affinity_held`` to ``message.response_metadata``."""
    extra = {} if lease.affinity_held is None else {"affinity_held": lease.affinity_held}
    message.response_metadata = {
        **message.response_metadata,
        "key_id": lease.key_id,
        "attempts": attempts,
        "pool": lease.model_name,
        **extra,
    }


def annotate_result(result: ChatResult, lease: Lease, attempts: int) -> None:
    """Annotate every generation of ``result`` and its ``llm_output``."""
    for gen in result.generations:
        annotate(gen.message, lease, attempts)
    result.llm_output = {**(result.llm_output or {}), "key_id": lease.key_id}


@dataclass
class Attempts:
    """The attempts of one request: deadline for capacity, counts, and failure decisions."""

    pool: str
    estimated_tokens: int
    max_attempts: int
    max_wait: float
    backoff_base: float
    backoff_max: float
    #: The conversation the leases are for (the acquire's ``affinity``), or ``None``.
    affinity: str | None = None
    #: The acquire's ``priority`` (higher first) and ``tenant`` (whose request it is).
    priority: int = 0
    tenant: str | None = None
    count: int = 0
    model_side: int = 0
    deadline: float = field(init=False)

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.max_wait

    @property
    def remaining_wait(self) -> float:
        """Seconds left to wait for capacity."""
        return max(0.0, self.deadline - time.monotonic())

    def exhausted(self, exc: AllKeysExhaustedError) -> RotatingRateLimitError:
        """The error for a pool without capacity."""
        if isinstance(exc, RotatingRateLimitError):
            return exc
        return exhausted(exc)

    def _backoff(self) -> float:
        self.model_side += 1
        delay = min(self.backoff_max, self.backoff_base * float(2 ** (self.model_side - 1)))
        return delay * random.uniform(0.5, 1.0)

    def decide(self, lease: Lease, exc: BaseException, found: Classified) -> float:
        """Settle ``lease`` after ``exc`` (sync) and return the delay before the next try.

        Raises:
            The caller's error (chained to ``exc``) when the request must not be retried
            or its attempts are used up; ``exc`` itself if it is no provider failure.
        """
        scrub_exception(exc, [lease.api_key.get_secret_value()])
        if found.kind is None:
            lease.complete()
            raise exc
        outcome = lease.fail(found.kind, found.retry_after, found.reason, facts=found.facts)
        return self._after(lease, exc, found, outcome)

    async def adecide(self, lease: Lease, exc: BaseException, found: Classified) -> float:
        """Async twin of :meth:`decide`."""
        scrub_exception(exc, [lease.api_key.get_secret_value()])
        if found.kind is None:
            await lease.acomplete()
            raise exc
        outcome = await lease.afail(found.kind, found.retry_after, found.reason, facts=found.facts)
        return self._after(lease, exc, found, outcome)

    def _after(self, lease: Lease, exc: BaseException, found: Classified, outcome: str) -> float:
        kind = found.kind
        assert kind is not None
        logger.warning(
            "pool %s: key %s failed (%s, %s); key %s; attempt %d/%d",
            self.pool,
            lease.key_id,
            kind.value,
            found.reason,
            outcome,
            self.count,
            self.max_attempts,
        )
        if kind is FailureKind.INVALID_REQUEST:
            raise self.error(lease, exc, found) from exc
        last = self.count >= self.max_attempts
        if kind in (FailureKind.RATE_LIMIT, FailureKind.DAILY_QUOTA):
            if last:
                raise RotatingRateLimitError(
                    self.pool,
                    found.retry_after,
                    {lease.key_id: f"{kind.value}: {found.reason}"},
                    message=(
                        f"No capacity for model {self.pool!r} after {self.count} attempt(s): "
                        f"key {lease.key_id!r} was refused by the provider ({found.reason})"
                    ),
                ) from exc
            return 0.0
        if last:
            raise self.error(lease, exc, found) from exc
        if kind is FailureKind.AUTH:
            return 0.0
        return self._backoff()

    def error(self, lease: Lease, exc: BaseException, found: Classified) -> Exception:
        """The caller's error for ``exc`` on ``lease`` (secret redacted, also from the
        chained SDK error's request and response)."""
        scrub_exception(exc, [lease.api_key.get_secret_value()])
        return provider_error(
            exc,
            found,
            model=self.pool,
            key_id=lease.key_id,
            attempts=self.count,
            secret=lease.api_key.get_secret_value(),
        )


def _streams(inner: BaseChatModel) -> bool:
    return type(inner)._stream is not BaseChatModel._stream


def chunks(
    inner: BaseChatModel, messages: list[BaseMessage], stop: list[str] | None, call: dict[str, Any]
) -> Iterator[ChatGenerationChunk]:
    if _streams(inner):
        yield from inner._stream(messages, stop=stop, **call)
        return
    result = inner._generate(messages, stop=stop, **call)
    for gen in result.generations:
        yield _as_chunk(gen.message)


async def achunks(
    inner: BaseChatModel, messages: list[BaseMessage], stop: list[str] | None, call: dict[str, Any]
) -> AsyncIterator[ChatGenerationChunk]:
    if _streams(inner) or type(inner)._astream is not BaseChatModel._astream:
        async for chunk in inner._astream(messages, stop=stop, **call):
            yield chunk
        return
    result = await inner._agenerate(messages, stop=stop, **call)
    for gen in result.generations:
        yield _as_chunk(gen.message)


def _as_chunk(message: BaseMessage) -> ChatGenerationChunk:
    data = message.model_dump(exclude={"type"})
    if isinstance(message, AIMessage):
        data["tool_call_chunks"] = [
            {"name": tc["name"], "args": json.dumps(tc["args"]), "id": tc["id"]}
            for tc in message.tool_calls
        ]
        data.pop("tool_calls", None)
        data.pop("invalid_tool_calls", None)
    return ChatGenerationChunk(message=AIMessageChunk(**data))
