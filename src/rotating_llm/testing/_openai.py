"""OpenAI chat-completions dialect: request parsing, replies and the real error bodies."""

from __future__ import annotations

import itertools
import json
import math
import time
from typing import TYPE_CHECKING, Any

from rotating_llm.testing._config import IMAGE_TOKENS, count_tokens, fingerprint
from rotating_llm.testing._reply import (
    Hints,
    Plan,
    choose_tool,
    reply_text,
    split_chunks,
    value_for_schema,
)

if TYPE_CHECKING:
    from rotating_llm.testing._limits import Rejection
    from rotating_llm.testing._quota import QuotaView

__all__ = [
    "count_request_tokens",
    "error",
    "format_duration",
    "plan",
    "rate_limit_headers",
    "render",
    "stream",
]

Answer = tuple[int, Any, dict[str, str]]
_ids = itertools.count(1)
_LIMIT_NAMES = {
    "rpm": ("requests", "requests per min (RPM)"),
    "tpm": ("tokens", "tokens per min (TPM)"),
    "rpd": ("requests", "requests per day (RPD)"),
    "tpd": ("tokens", "tokens per day (TPD)"),
}


def format_duration(seconds: float) -> str:
    """Format a delay as OpenAI's ``x-ratelimit-reset-*`` headers do (Go durations).

    Millisecond precision: ``"20ms"`` below a second, else ``"1s"``, ``"1.5s"``,
    ``"6m0s"``, ``"1h2m3.25s"``; ``"0s"`` for nothing left to wait.
    """
    ms = max(math.ceil(seconds * 1000 - 1e-6), 0)
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, frac = divmod(rest, 1000)
    secs = f"{whole}.{frac:03d}".rstrip("0").rstrip(".") if frac else str(whole)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def rate_limit_headers(requests: QuotaView, tokens: QuotaView) -> dict[str, str]:
    """OpenAI's ``x-ratelimit-*`` headers for the key's tightest per-minute limits.

    ``requests`` gives ``x-ratelimit-{limit,remaining,reset}-requests`` and ``tokens``
    the ``-tokens`` ones; a kind with no limit gets no header.
    """
    headers: dict[str, str] = {}
    for name, view in (("requests", requests), ("tokens", tokens)):
        if view.limit is None:
            continue
        headers[f"x-ratelimit-limit-{name}"] = str(view.limit)
        headers[f"x-ratelimit-remaining-{name}"] = str(view.remaining)
        headers[f"x-ratelimit-reset-{name}"] = format_duration(view.reset)
    return headers


def _text_of(content: Any) -> tuple[str, int]:
    """Return a message content's text and the tokens of its non-text parts."""
    if isinstance(content, str):
        return content, 0
    texts: list[str] = []
    extra = 0
    for part in content if isinstance(content, list) else []:
        if isinstance(part, dict) and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif isinstance(part, dict):
            extra += IMAGE_TOKENS
    return " ".join(texts), extra


def count_request_tokens(body: dict[str, Any]) -> int:
    """Prompt tokens of a request: message texts, tool calls and tool results."""
    total = 0
    for msg in body.get("messages") or []:
        if not isinstance(msg, dict):
            continue
        text, extra = _text_of(msg.get("content"))
        total += count_tokens(text) + extra
        for call in msg.get("tool_calls") or []:
            fn = call.get("function", {}) if isinstance(call, dict) else {}
            total += count_tokens(str(fn.get("name", ""))) + count_tokens(
                str(fn.get("arguments", ""))
            )
    return total


def plan(body: dict[str, Any], *, streaming: bool) -> Plan:
    """Decide the reply to a chat-completions body.

    Raises:
        ValueError: The body is not a valid request (answered with ``400``).
    """
    messages = body.get("messages")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ValueError("you must provide a model parameter")
    if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
        raise ValueError("'messages' must be a non-empty array")
    last = messages[-1]
    prompt, _ = _text_of(last.get("content"))
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else [s for s in stop or [] if isinstance(s, str)]
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    common: dict[str, Any] = {
        "model": model,
        "stream": streaming,
        "input_tokens": count_request_tokens(body),
        "stop": stops,
        "max_tokens": max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else None,
    }
    tools = [
        t["function"]
        for t in body.get("tools") or []
        if isinstance(t, dict) and isinstance(t.get("function"), dict) and t["function"].get("name")
    ]
    choice = body.get("tool_choice", "auto")
    if tools and choice != "none" and last.get("role") != "tool":
        names = [t["name"] for t in tools]
        forced = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
        name: str = (
            forced if isinstance(forced, str) and forced in names else choose_tool(names, prompt)
        )
        schema = next(t for t in tools if t["name"] == name).get("parameters")
        args = value_for_schema(schema, Hints(prompt)) if schema else {}
        return Plan(tool_calls=[(name, args if isinstance(args, dict) else {})], **common)
    fmt = body.get("response_format") or {}
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if last.get("role") == "tool":
        text = f"Tool {last.get('name') or last.get('tool_call_id', '')} returned: {prompt}"
    elif kind == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        text = json.dumps(value_for_schema(schema, Hints(prompt)), ensure_ascii=False)
        common["stop"] = []
    elif kind == "json_object":
        text = json.dumps({"reply": reply_text(prompt)}, ensure_ascii=False)
        common["stop"] = []
    else:
        text = reply_text(prompt)
    return Plan(text=text, **common)


def _usage(plan_: Plan) -> dict[str, Any]:
    return {
        "prompt_tokens": plan_.input_tokens,
        "completion_tokens": plan_.output_tokens,
        "total_tokens": plan_.input_tokens + plan_.output_tokens,
    }


def _tool_calls(plan_: Plan, stream_: bool) -> list[dict[str, Any]]:
    calls = []
    for i, (name, args) in enumerate(plan_.tool_calls):
        call: dict[str, Any] = {
            "id": f"call_fake_{next(_ids)}",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)},
        }
        if stream_:
            call["index"] = i
        calls.append(call)
    return calls


def render(plan_: Plan) -> dict[str, Any]:
    """Return the ``chat.completion`` object of a plan."""
    message: dict[str, Any] = {"role": "assistant", "content": plan_.text, "refusal": None}
    if plan_.tool_calls:
        message["tool_calls"] = _tool_calls(plan_, False)
    return {
        "id": f"chatcmpl-fake-{next(_ids)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": plan_.model,
        "system_fingerprint": "fp_fake",
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": plan_.finish}
        ],
        "usage": _usage(plan_),
    }


def stream(plan_: Plan, include_usage: bool) -> list[dict[str, Any]]:
    """Return the ``chat.completion.chunk`` events of a streamed reply (before ``[DONE]``)."""
    ident = f"chatcmpl-fake-{next(_ids)}"
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": plan_.model,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    events = [chunk({"role": "assistant", "content": "", "refusal": None}, None)]
    if plan_.tool_calls:
        events.append(chunk({"tool_calls": _tool_calls(plan_, True)}, None))
    else:
        events.extend(chunk({"content": c}, None) for c in split_chunks(plan_.text or ""))
    events.append(chunk({}, plan_.finish))
    if include_usage:
        events.append({**chunk({}, None), "choices": [], "usage": _usage(plan_)})
    return events


def error(code: int, message: str, kind: str, err_code: str | None) -> Answer:
    """Return an OpenAI error answer."""
    body = {"error": {"message": message, "type": kind, "param": None, "code": err_code}}
    return code, body, {}


def missing_key() -> Answer:
    """``401`` for a request without a key."""
    return error(
        401,
        "You didn't provide an API key. You need to provide your API key in an Authorization"
        " header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        "invalid_request_error",
        None,
    )


def invalid_key(key: str) -> Answer:
    """``401 invalid_api_key`` (the key shown by fingerprint only)."""
    return error(
        401,
        f"Incorrect API key provided: {fingerprint(key)}. You can find your API key at"
        " https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
        "invalid_api_key",
    )


def suspended() -> Answer:
    """``403`` for a deactivated key."""
    return error(
        403,
        "Permission denied: this API key's account has been deactivated (suspended).",
        "invalid_request_error",
        "account_deactivated",
    )


def server_error() -> Answer:
    """``500 server_error``."""
    return error(
        500,
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    )


def overloaded() -> Answer:
    """``503``: the model is overloaded."""
    return error(
        503,
        "The model is overloaded. The engine is currently overloaded, please try again later.",
        "server_error",
        "engine_overloaded",
    )


def bad_request(message: str) -> Answer:
    """``400 invalid_request_error``."""
    return error(400, message, "invalid_request_error", None)


def rate_limited(rejection: Rejection, model: str) -> Answer:
    """``429 rate_limit_exceeded`` with ``Retry-After`` (whole seconds) and ``retry-after-ms``.

    The caller adds the ``x-ratelimit-*`` headers (:func:`rate_limit_headers`).
    """
    kind, label = _LIMIT_NAMES[rejection.kind]
    seconds = max(math.ceil(rejection.retry_after), 1)
    message = (
        f"Rate limit reached for {model} in organization org-fake on {label}: "
        f"Limit {rejection.limit}, Used {rejection.used}, Requested {rejection.requested}. "
        f"Please try again in {seconds}s. "
        "Visit https://platform.openai.com/account/rate-limits to learn more."
    )
    status, body, _ = error(429, message, kind, "rate_limit_exceeded")
    headers = {
        "Retry-After": str(seconds),
        "retry-after-ms": str(max(int(rejection.retry_after * 1000), 1)),
    }
    return status, body, headers
