"""Sending through a model and its fallbacks: first without waiting, then the soonest."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rotating_llm.router._results import Outcome, error_type

if TYPE_CHECKING:
    from langchain_core.messages import BaseMessage

    from rotating_llm.langchain import RotatingChatModel

__all__ = ["ainvoke", "invoke"]


def _order(refused: list[tuple[str, BaseException]], wait: float) -> list[str]:
    """Models worth waiting for, soonest capacity first (within ``wait``)."""
    timed = [(getattr(e, "retry_after", None), m) for m, e in refused]
    soon = sorted((r, i, m) for i, (r, m) in enumerate(timed) if r is not None and r <= wait)
    return [m for _, _, m in soon[:1]]


def invoke(
    chat_model: Callable[[str], RotatingChatModel],
    outcome: Outcome,
    messages: list[BaseMessage],
    candidates: list[str],
    call: dict[str, Any],
) -> BaseMessage:
    """Send through the candidates: first without waiting, then wait for the soonest."""
    from rotating_llm.router._engine import MAX_WAIT_KWARG

    wait = float(call[MAX_WAIT_KWARG])
    if len(candidates) == 1:
        outcome.model = candidates[0]
        return chat_model(candidates[0]).invoke(messages, **call)
    refused: list[tuple[str, BaseException]] = []
    for model in candidates:
        outcome.model = model
        try:
            return chat_model(model).invoke(messages, **{**call, MAX_WAIT_KWARG: 0.0})
        except Exception as exc:
            if error_type(exc) != "rate_limited":
                raise
            refused.append((model, exc))
    for model in _order(refused, wait):
        outcome.model = model
        return chat_model(model).invoke(messages, **call)
    outcome.model = outcome.preferred
    raise min(refused, key=_retry_key)[1]


async def ainvoke(
    chat_model: Callable[[str], RotatingChatModel],
    outcome: Outcome,
    messages: list[BaseMessage],
    candidates: list[str],
    call: dict[str, Any],
) -> BaseMessage:
    """Async twin of :func:`invoke`."""
    from rotating_llm.router._engine import MAX_WAIT_KWARG

    wait = float(call[MAX_WAIT_KWARG])
    if len(candidates) == 1:
        outcome.model = candidates[0]
        return await chat_model(candidates[0]).ainvoke(messages, **call)
    refused: list[tuple[str, BaseException]] = []
    for model in candidates:
        outcome.model = model
        try:
            llm = chat_model(model)
            return await llm.ainvoke(messages, **{**call, MAX_WAIT_KWARG: 0.0})
        except Exception as exc:
            if error_type(exc) != "rate_limited":
                raise
            refused.append((model, exc))
    for model in _order(refused, wait):
        outcome.model = model
        return await chat_model(model).ainvoke(messages, **call)
    outcome.model = outcome.preferred
    raise min(refused, key=_retry_key)[1]


def _retry_key(item: tuple[str, BaseException]) -> float:
    retry = getattr(item[1], "retry_after", None)
    return float("inf") if retry is None else float(retry)
