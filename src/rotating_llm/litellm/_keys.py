"""LiteLLM deployments as the core's ``APIKey`` objects, and a secret store that holds none."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from rotating_llm.keys.models import APIKey
from rotating_llm.secrets.base import SecretStore

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
_NON_TEXT_PART_TOKENS = 258


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


def _text_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def _content_tokens(content: Any) -> int:
    if isinstance(content, str):
        return _text_tokens(content)
    total = 0
    if isinstance(content, Sequence):
        for part in content:
            if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                total += _text_tokens(part["text"])
            elif part is not None:
                total += _NON_TEXT_PART_TOKENS
    return total


def estimate_tokens(
    messages: Sequence[Any] | None,
    input: Any = None,
    request_kwargs: Mapping[str, Any] | None = None,
) -> int:
    """A cheap, generous token estimate: about one token per 4 characters of the prompt.

    Adds the request's ``max_tokens``/``max_completion_tokens`` when set (OpenAI counts
    them against TPM). The reservation is corrected to the real usage afterwards.
    """
    total = 0
    for msg in messages or ():
        if not isinstance(msg, Mapping):
            continue
        total += _content_tokens(msg.get("content"))
        for call in msg.get("tool_calls") or ():
            fn = call.get("function") if isinstance(call, Mapping) else None
            if isinstance(fn, Mapping):
                total += _text_tokens(str(fn.get("name", ""))) + _text_tokens(
                    str(fn.get("arguments", ""))
                )
    if isinstance(input, str):
        total += _text_tokens(input)
    elif isinstance(input, Sequence):
        total += sum(_text_tokens(x) if isinstance(x, str) else 1 for x in input)
    kwargs = request_kwargs or {}
    for name in ("max_completion_tokens", "max_tokens"):
        cap = kwargs.get(name)
        if isinstance(cap, int) and not isinstance(cap, bool) and cap > 0:
            total += cap
            break
    return max(total, 1)
