"""LiteLLM deployments as the core's ``APIKey`` objects, and a secret store that holds none."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from rotating_llm.keys.models import APIKey
from rotating_llm.secrets.base import SecretStore
from rotating_llm.tokens import (
    Message,
    content_parts,
    estimate_request,
    extra_text,
    tool_call_text,
)

__all__ = [
    "PLACEHOLDER_SECRET",
    "UNLIMITED",
    "DeploymentSecretStore",
    "deployment_id",
    "deployment_key",
    "estimate_tokens",
    "key_id_for",
]

#: Limit given to a deployment that declares none: the limiter counts it but never refuses.
UNLIMITED = 1_000_000_000
#: What a lease's ``api_key`` holds: LiteLLM keeps and sends the deployment's own key.
PLACEHOLDER_SECRET = "litellm-managed"

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$")


class DeploymentSecretStore(SecretStore):
    """The secret store of the LiteLLM face: every key's secret is a placeholder.

    LiteLLM sends each deployment's own ``api_key``; the core never needs it, so no
    secret is read, copied or held here.
    """

    name = "litellm"

    def _fetch(self, key_id: str) -> str:
        return PLACEHOLDER_SECRET

    def location(self, key_id: str) -> str:
        """Where the secret of ``key_id`` lives: the deployment's ``litellm_params``."""
        return f"litellm deployment {key_id} (litellm_params.api_key)"


def deployment_id(deployment: Mapping[str, Any]) -> str:
    """The deployment's id (``model_info.id``), which LiteLLM always sets."""
    info = deployment.get("model_info") or {}
    raw = info.get("id") if isinstance(info, Mapping) else None
    if raw is None:
        raise ValueError("deployment has no model_info.id")
    return str(raw)


def key_id_for(dep_id: str) -> str:
    """The core key id of a deployment id: itself, or a stable hash if it has odd characters."""
    if _ID.match(dep_id):
        return dep_id
    return "litellm-" + hashlib.sha256(dep_id.encode("utf-8")).hexdigest()[:32]


def _limit(deployment: Mapping[str, Any], name: str) -> int | None:
    params = deployment.get("litellm_params") or {}
    info = deployment.get("model_info") or {}
    for source in (params, info, deployment):
        value = source.get(name) if isinstance(source, Mapping) else None
        if value is not None and not isinstance(value, bool):
            try:
                number = int(value)
            except (TypeError, ValueError):
                continue
            if number > 0:
                return number
    return None


def _provider(deployment: Mapping[str, Any]) -> str:
    params = deployment.get("litellm_params") or {}
    explicit = params.get("custom_llm_provider")
    if isinstance(explicit, str) and explicit:
        return explicit
    model = params.get("model")
    if isinstance(model, str) and "/" in model:
        return model.split("/", 1)[0] or "litellm"
    return "litellm"


def deployment_key(
    deployment: Mapping[str, Any], pool: str, from_file: Mapping[str, APIKey] | None = None
) -> APIKey:
    """The ``APIKey`` of one deployment of the model group ``pool``.

    Limits come from a keys-file entry whose ``key_id`` is the deployment id, else from
    ``litellm_params`` (``rpm``, ``tpm``, ``rpd``; ``model_info`` also works). A missing
    limit is :data:`UNLIMITED`.
    """
    dep_id = deployment_id(deployment)
    kid = key_id_for(dep_id)
    entry = None
    if from_file:
        entry = from_file.get(dep_id) or from_file.get(kid)
    if entry is not None:
        return entry.model_copy(update={"key_id": kid, "model_name": pool})
    return APIKey(
        key_id=kid,
        model_name=pool,
        provider=_provider(deployment),
        rpm=_limit(deployment, "rpm") or UNLIMITED,
        tpm=_limit(deployment, "tpm") or UNLIMITED,
        rpd=_limit(deployment, "rpd"),
        weight=_weight(deployment),
    )


def _weight(deployment: Mapping[str, Any]) -> float:
    params = deployment.get("litellm_params") or {}
    value = params.get("weight") if isinstance(params, Mapping) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < math.inf:
        return float(value)
    return 1.0


def neutral_messages(messages: Sequence[Any] | None, input: Any = None) -> list[Message]:
    """LiteLLM (OpenAI-format) messages and embedding ``input`` in the neutral form."""
    out = []
    for msg in messages or ():
        if not isinstance(msg, Mapping):
            continue
        text, media = content_parts(msg.get("content"))
        calls = []
        for call in msg.get("tool_calls") or ():
            fn = call.get("function") if isinstance(call, Mapping) else None
            if isinstance(fn, Mapping):
                calls.append(tool_call_text(fn.get("name", ""), fn.get("arguments", "")))
        text = "\n".join([text, *calls]) if calls else text
        out.append(Message(role=str(msg.get("role", "user")), text=text, media=media))
    if isinstance(input, str):
        out.append(Message(role="input", text=input))
    elif isinstance(input, Sequence):
        out += [Message(role="input", text=x if isinstance(x, str) else str(x)) for x in input]
    return out


def max_output_tokens(request_kwargs: Mapping[str, Any] | None) -> int:
    """The request's ``max_completion_tokens`` or ``max_tokens`` (0 when unset)."""
    for name in ("max_completion_tokens", "max_tokens"):
        cap = (request_kwargs or {}).get(name)
        if isinstance(cap, int) and not isinstance(cap, bool) and cap > 0:
            return cap
    return 0


def estimate_tokens(
    messages: Sequence[Any] | None,
    input: Any = None,
    request_kwargs: Mapping[str, Any] | None = None,
) -> int:
    """The request's estimate by the one rule of :func:`rotating_llm.tokens.estimate_request`.

    The reservation is corrected to the real usage afterwards.
    """
    return estimate_request(
        neutral_messages(messages, input),
        max_output_tokens(request_kwargs),
        extra=extra_text(request_kwargs),
    )
