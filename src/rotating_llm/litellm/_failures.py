"""What a LiteLLM exception means for the key: its answer, handed to the core's classifier."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from rotating_llm.failures import (
    Classified,
    FailureKind,
    classify_http,
    classify_transport,
)

__all__ = ["classify", "retry_after_of", "usage_tokens"]


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and all(cur is not e for e in seen):
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def _status(exc: BaseException) -> int | None:
    for attr in ("status_code", "code"):
        value = getattr(exc, attr, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.isdigit():
            return int(value)
    return None


def _headers(exc: BaseException) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for source in (
        getattr(getattr(exc, "response", None), "headers", None),
        getattr(exc, "litellm_response_headers", None),
        getattr(exc, "headers", None),
    ):
        if source is None:
            continue
        try:
            items = list(source.items())
        except (AttributeError, TypeError):
            continue
        for name, value in items:
            merged[str(name).lower()] = value
    return merged


def _body(exc: BaseException) -> Any:
    """The provider's error body: ``body`` (OpenAI-style providers) or the JSON LiteLLM
    flattened into its message (Gemini); ``None`` when there is none."""
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping) and body:
        return body
    message = getattr(exc, "message", None)
    text = message if isinstance(message, str) else str(exc)
    start = text.find("{")
    if start < 0:
        return None
    try:
        found = json.JSONDecoder().raw_decode(text[start:])[0]
    except ValueError:
        return None
    return found if isinstance(found, Mapping) else None


def _answer(exc: BaseException) -> tuple[int, Any, dict[str, Any]] | None:
    """``(status, body, headers)`` of the provider's answer found in ``exc``'s chain.

    LiteLLM re-maps some statuses (Gemini's ``400 API_KEY_INVALID`` becomes ``401``, a
    ``503`` a ``500``); the body's own ``code`` is the provider's status, so it wins.
    """
    headers: dict[str, Any] = {}
    for err in reversed(_chain(exc)):  # the innermost error holds the real headers
        headers = {**_headers(err), **headers}
    for err in _chain(exc):
        body = _body(err)
        if body is None:
            continue
        inner = body.get("error", body)
        code = inner.get("code") if isinstance(inner, Mapping) else None
        status = code if isinstance(code, int) and not isinstance(code, bool) else _status(err)
        if status is not None:
            return status, body, headers
    return None


def _names(exc: BaseException) -> list[str]:
    return [cls.__name__ for err in _chain(exc) for cls in type(err).__mro__]


def retry_after_of(exc: BaseException) -> float | None:
    """The provider's retry delay: RetryInfo in the body, ``retry-after-ms``,
    ``Retry-After`` or the message's "try again in" (read as a 429's would be)."""
    body = _body(exc)
    return classify_http(429, body if body is not None else str(exc), _headers(exc)).retry_after


def classify(exc: BaseException) -> Classified:
    """Classify a LiteLLM (or OpenAI SDK, httpx) exception into the failure table.

    The provider's status, body and headers go to the core's
    :func:`rotating_llm.failures.classify_http`, as every face's do; exceptions without a
    provider answer (timeouts, lost connections) go to its ``classify_transport``.
    """
    answer = _answer(exc)
    if answer is not None:
        return classify_http(*answer)
    found = classify_transport(_names(exc))
    if found is not None:
        return found
    status = _status(exc)
    if status is not None:  # no body: the message text is all the answer there is
        message = getattr(exc, "message", None)
        text = message if isinstance(message, str) else str(exc)
        return classify_http(status, text, _headers(exc))
    return Classified(FailureKind.SERVER, None, type(exc).__name__)


def _get(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def usage_tokens(response: Any, counts: Literal["total", "input"] = "total") -> int | None:
    """Tokens a response reports (``usage.total_tokens``, or ``prompt_tokens`` for ``input``)."""
    usage = _get(response, "usage")
    if usage is None:
        return None
    prompt = _get(usage, "prompt_tokens")
    completion = _get(usage, "completion_tokens")
    total = _get(usage, "total_tokens")
    if counts == "input":
        return int(prompt) if isinstance(prompt, int) and prompt >= 0 else None
    if isinstance(total, int) and total >= 0:
        return total
    if isinstance(prompt, int) and isinstance(completion, int):
        return prompt + completion
    return None
