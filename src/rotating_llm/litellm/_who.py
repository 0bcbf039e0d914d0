"""Whose request it is, how urgent, and which conversation: read from LiteLLM's request.

* ``tenant``: ``metadata["tenant"]``, else the request's ``user`` (OpenAI's end-user
  field, which the proxy passes through), else none.
* ``priority``: ``metadata["priority"]`` in this library's sense (-1000..1000, higher
  first), else LiteLLM's own ``priority`` when it reaches the pick, mapped: LiteLLM's
  scheduler serves LOWER numbers first (0..255), so its ``p`` becomes ``-p`` here (its 0,
  the most urgent, is this library's default 0; its 255 is -255). LiteLLM's ``Router``
  takes its ``priority`` out of the request for its own scheduler before a deployment is
  picked, so through the ``Router`` only ``metadata["priority"]`` arrives.
* ``affinity`` (with the ``sticky_keys`` setting on): ``metadata["session_id"]``, else
  ``metadata["conversation_id"]``, else the request's ``litellm_session_id``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rotating_llm._bounds import check_priority, check_tenant
from rotating_llm.errors import ConfigError
from rotating_llm.litellm._book import metadata_of

__all__ = ["AFFINITY_FIELDS", "Who", "who"]

#: Metadata fields naming a conversation, in the order they are looked for.
AFFINITY_FIELDS = ("session_id", "conversation_id")


@dataclass(frozen=True)
class Who:
    """The acquire's ``priority``, ``tenant`` and ``affinity`` of one request."""

    priority: int = 0
    tenant: str | None = None
    affinity: str | None = None


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        return None
    return str(value)


def who(request_kwargs: Mapping[str, Any] | None, sticky: bool) -> Who:
    """The request's priority, tenant and (``sticky``) affinity.

    Raises:
        ConfigError: a priority or tenant that is not one (naming the field).
    """
    if not request_kwargs:
        return Who()
    meta = metadata_of(request_kwargs)
    raw = meta.get("priority")
    if raw is not None:
        priority = check_priority(raw, ConfigError)
    elif request_kwargs.get("priority") is not None:
        theirs = check_priority(request_kwargs["priority"], ConfigError)
        priority = -theirs
    else:
        priority = 0
    tenant = meta.get("tenant")
    if tenant is None:
        tenant = request_kwargs.get("user")
    tenant = check_tenant(tenant if tenant != "" else None, ConfigError)
    affinity = None
    if sticky:
        for name in AFFINITY_FIELDS:
            affinity = _text(meta.get(name))
            if affinity:
                break
        else:
            affinity = _text(request_kwargs.get("litellm_session_id"))
    return Who(priority, tenant, affinity)
