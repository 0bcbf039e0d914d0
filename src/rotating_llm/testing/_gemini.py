"""Gemini REST dialect: request parsing, replies and the real error bodies."""

from __future__ import annotations

import itertools
import json
import math
from typing import TYPE_CHECKING, Any

from rotating_llm.testing._config import IMAGE_TOKENS, count_json_tokens, count_tokens, fingerprint
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

__all__ = [
    "KEY_QUOTA_IDS",
    "QUOTAS",
    "QUOTA_IDS",
    "Answer",
    "count_request_tokens",
    "error",
    "plan",
    "render",
    "stream",
]

Answer = tuple[int, Any, dict[str, str]]
"""HTTP status, JSON body and extra headers."""

_RATE_LIMIT_DOCS = "https://ai.google.dev/gemini-api/docs/rate-limits"
_REQUESTS_METRIC = "generativelanguage.googleapis.com/generate_content_free_tier_requests"
_TOKENS_METRIC = "generativelanguage.googleapis.com/generate_content_free_tier_input_token_count"

#: ``(scope, limit) -> (quotaMetric, quotaId)`` of every 429 the simulator answers.
#: The ``"project"`` rows are Gemini's real ids (its quotas are per project; a key
#: outside any project is its own project). The ``"key"`` rows name a per-key true
#: limit, which Gemini does not have: same metrics, ``PerApiKey`` in place of
#: ``PerProject`` (and no ``PerProject`` anywhere), so a reader can tell them apart.
QUOTAS: dict[tuple[str, str], tuple[str, str]] = {
    ("project", "rpm"): (
        _REQUESTS_METRIC,
        "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
    ),
    ("project", "tpm"): (_TOKENS_METRIC, "GenerateContentInputTokensPerModelPerMinute-FreeTier"),
    ("project", "rpd"): (_REQUESTS_METRIC, "GenerateRequestsPerDayPerProjectPerModel-FreeTier"),
    ("project", "tpd"): (_TOKENS_METRIC, "GenerateContentInputTokensPerModelPerDay-FreeTier"),
    ("key", "rpm"): (_REQUESTS_METRIC, "GenerateRequestsPerMinutePerApiKeyPerModel-FreeTier"),
    ("key", "tpm"): (
        _TOKENS_METRIC,
        "GenerateContentInputTokensPerApiKeyPerModelPerMinute-FreeTier",
    ),
    ("key", "rpd"): (_REQUESTS_METRIC, "GenerateRequestsPerDayPerApiKeyPerModel-FreeTier"),
    ("key", "tpd"): (_TOKENS_METRIC, "GenerateContentInputTokensPerApiKeyPerModelPerDay-FreeTier"),
}
#: The ``quotaId`` of each project (real) limit, spelled as the real API does.
QUOTA_IDS = {kind: qid for (scope, kind), (_, qid) in QUOTAS.items() if scope == "project"}
#: The ``quotaId`` of each per-key true limit.
KEY_QUOTA_IDS = {kind: qid for (scope, kind), (_, qid) in QUOTAS.items() if scope == "key"}
_ids = itertools.count(1)


def _get(obj: Any, *names: str) -> Any:
    if not isinstance(obj, dict):
        return None
    for name in names:
        if name in obj:
            return obj[name]
    return None


def _parts(content: Any) -> list[dict[str, Any]]:
    parts = _get(content, "parts")
    return [p for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []


def _part_tokens(part: dict[str, Any]) -> int:
    text = part.get("text")
    if isinstance(text, str):
        return count_tokens(text)
    call = _get(part, "functionCall", "function_call")
    if call is not None:
        return count_json_tokens(call)
    response = _get(part, "functionResponse", "function_response")
    if response is not None:
        return count_json_tokens(response)
    if _get(part, "inlineData", "inline_data", "fileData", "file_data") is not None:
        return IMAGE_TOKENS
    return 0


def count_request_tokens(body: dict[str, Any]) -> int:
    """Prompt tokens of a request: its contents and system instruction (tools are free)."""
    contents = body.get("contents")
    total = 0
    if isinstance(contents, list):
        for content in contents:
            total += sum(_part_tokens(p) for p in _parts(content))
    system = _get(body, "systemInstruction", "system_instruction")
    total += sum(_part_tokens(p) for p in _parts(system))
    return total


def _declarations(body: dict[str, Any]) -> list[dict[str, Any]]:
    decls: list[dict[str, Any]] = []
    tools = body.get("tools")
    for tool in tools if isinstance(tools, list) else []:
        found = _get(tool, "functionDeclarations", "function_declarations")
        if isinstance(found, list):
            decls.extend(d for d in found if isinstance(d, dict) and d.get("name"))
    return decls


def plan(body: dict[str, Any], model: str, *, streaming: bool) -> Plan:
    """Decide the reply to a ``generateContent`` body.

    Raises:
        ValueError: The body is not a valid request (answered with ``400``).
    """
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise ValueError("* GenerateContentRequest.contents: contents is not specified")
    last = contents[-1]
    responses = [_get(p, "functionResponse", "function_response") for p in _parts(last)]
    responses = [r for r in responses if isinstance(r, dict)]
    prompt = " ".join(
        p["text"] for p in _parts(last) if isinstance(p.get("text"), str) and not p.get("thought")
    )
    config = _get(body, "generationConfig", "generation_config") or {}
    stop = _get(config, "stopSequences", "stop_sequences") or []
    max_tokens = _get(config, "maxOutputTokens", "max_output_tokens")
    common: dict[str, Any] = {
        "model": model,
        "stream": streaming,
        "input_tokens": count_request_tokens(body),
        "stop": [s for s in stop if isinstance(s, str)],
        "max_tokens": max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else None,
    }
    decls = _declarations(body)
    calling = _get(_get(body, "toolConfig", "tool_config"), "functionCallingConfig") or {}
    mode = str(_get(calling, "mode") or "AUTO").upper()
    if decls and not responses and mode != "NONE":
        allowed = _get(calling, "allowedFunctionNames", "allowed_function_names") or []
        names = [d["name"] for d in decls if not allowed or d["name"] in allowed]
        name = choose_tool(names or [d["name"] for d in decls], prompt)
        decl = next(d for d in decls if d["name"] == name)
        schema = _get(decl, "parametersJsonSchema", "parameters_json_schema", "parameters")
        args = value_for_schema(schema, Hints(prompt)) if schema else {}
        return Plan(tool_calls=[(name, args if isinstance(args, dict) else {})], **common)
    if responses:
        text = "; ".join(
            f"Tool {r.get('name', '')} returned: "
            + json.dumps(r.get("response"), ensure_ascii=False)
            for r in responses
        )
    elif str(_get(config, "responseMimeType", "response_mime_type")) == "application/json":
        schema = _get(config, "responseJsonSchema", "response_json_schema", "responseSchema")
        value = value_for_schema(schema, Hints(prompt)) if schema else {"reply": reply_text(prompt)}
        text = json.dumps(value, ensure_ascii=False)
        common["stop"] = []
    else:
        text = reply_text(prompt)
    return Plan(text=text, **common)


def _usage(plan_: Plan, output_tokens: int) -> dict[str, Any]:
    return {
        "promptTokenCount": plan_.input_tokens,
        "candidatesTokenCount": output_tokens,
        "totalTokenCount": plan_.input_tokens + output_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": plan_.input_tokens}],
    }


def _envelope(plan_: Plan, parts: list[dict[str, Any]], finish: bool, out: int) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = "MAX_TOKENS" if plan_.finish == "length" else "STOP"
    return {
        "candidates": [candidate],
        "usageMetadata": _usage(plan_, out),
        "modelVersion": plan_.model,
        "responseId": f"fake-{next(_ids)}",
    }


def _call_parts(plan_: Plan) -> list[dict[str, Any]]:
    return [{"functionCall": {"name": n, "args": a}} for n, a in plan_.tool_calls]


def render(plan_: Plan) -> dict[str, Any]:
    """Return the ``GenerateContentResponse`` of a plan."""
    parts = _call_parts(plan_) if plan_.tool_calls else [{"text": plan_.text or ""}]
    return _envelope(plan_, parts, True, plan_.output_tokens)


def stream(plan_: Plan) -> list[dict[str, Any]]:
    """Return the server-sent events of a streamed reply (usage is cumulative)."""
    if plan_.tool_calls:
        return [_envelope(plan_, _call_parts(plan_), True, plan_.output_tokens)]
    chunks = split_chunks(plan_.text or "")
    events: list[dict[str, Any]] = []
    sent = ""
    for i, chunk in enumerate(chunks):
        sent += chunk
        final = i == len(chunks) - 1
        out = plan_.output_tokens if final else count_tokens(sent)
        events.append(_envelope(plan_, [{"text": chunk}], final, out))
    return events


def error(
    code: int, status: str, message: str, details: list[dict[str, Any]] | None = None
) -> Answer:
    """Return a ``google.rpc.Status`` error answer."""
    body: dict[str, Any] = {"error": {"code": code, "message": message, "status": status}}
    if details:
        body["error"]["details"] = details
    return code, body, {}


def _error_info(reason: str, domain: str = "googleapis.com") -> dict[str, Any]:
    return {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": domain,
        "metadata": {"service": "generativelanguage.googleapis.com"},
    }


def missing_key() -> Answer:
    """``403`` for a request without any API key."""
    return error(
        403,
        "PERMISSION_DENIED",
        "Method doesn't allow unregistered callers (callers without established identity)."
        " Please use API Key or other form of API consumer identity to call this API.",
    )


def invalid_key() -> Answer:
    """``400 INVALID_ARGUMENT`` with ``ErrorInfo`` reason ``API_KEY_INVALID``."""
    message = "API key not valid. Please pass a valid API key."
    localized = {
        "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
        "locale": "en-US",
        "message": message,
    }
    return error(400, "INVALID_ARGUMENT", message, [_error_info("API_KEY_INVALID"), localized])


def suspended(key: str) -> Answer:
    """``403 PERMISSION_DENIED`` for a suspended consumer (key shown by fingerprint)."""
    return error(
        403,
        "PERMISSION_DENIED",
        f"Permission denied: Consumer 'api_key:{fingerprint(key)}' has been suspended.",
        [_error_info("CONSUMER_SUSPENDED")],
    )


def server_error() -> Answer:
    """``500 INTERNAL``."""
    return error(
        500,
        "INTERNAL",
        "An internal error has occurred. Please retry or report in"
        " https://developers.generativeai.google/guide/troubleshooting",
    )


def overloaded() -> Answer:
    """``503 UNAVAILABLE``: the model is overloaded."""
    return error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")


def bad_request(message: str) -> Answer:
    """``400 INVALID_ARGUMENT`` for a malformed request."""
    return error(400, "INVALID_ARGUMENT", f"Invalid JSON payload received. {message}")


def not_found(model: str) -> Answer:
    """``404 NOT_FOUND`` for an unknown method."""
    return error(404, "NOT_FOUND", f"models/{model} is not found for API version v1beta.")


def retry_delay(seconds: float) -> str:
    """Format a delay as the API does: whole seconds, rounded up, e.g. ``"17s"``."""
    return f"{max(math.ceil(seconds), 1)}s"


def rate_limited(rejection: Rejection, model: str) -> Answer:
    """``429 RESOURCE_EXHAUSTED`` with ``QuotaFailure``, ``Help`` and ``RetryInfo``."""
    metric, quota_id = QUOTAS[(rejection.scope, rejection.kind)]
    delay = retry_delay(rejection.retry_after)
    message = (
        "You exceeded your current quota, please check your plan and billing details. "
        f"For more information on this error, head to: {_RATE_LIMIT_DOCS}. "
        "To monitor your current usage, head to: https://ai.dev/usage?tab=rate-limit. \n"
        f"* Quota exceeded for metric: {metric}, limit: {rejection.limit}, model: {model}\n"
        f"Please retry in {rejection.retry_after:.6f}s."
    )
    details: list[dict[str, Any]] = [
        {
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [
                {
                    "quotaMetric": metric,
                    "quotaId": quota_id,
                    "quotaDimensions": {"location": "global", "model": model},
                    "quotaValue": str(rejection.limit),
                }
            ],
        },
        {
            "@type": "type.googleapis.com/google.rpc.Help",
            "links": [
                {"description": "Learn more about Gemini API quotas", "url": _RATE_LIMIT_DOCS}
            ],
        },
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay},
    ]
    return error(429, "RESOURCE_EXHAUSTED", message, details)
