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

These come from the client, so none of them fails the request: a priority may be a number
or a numeric string (rounded, clipped to -1000..1000); a tenant longer than 256
characters becomes ``sha256:`` and its digest (the same tenant each time), an integer
tenant its decimal text; any other value is ignored as if absent (logged at DEBUG without
the value).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rotating_llm._bounds import MAX_PRIORITY, MAX_TENANT_LEN
from rotating_llm.litellm._book import metadata_of

__all__ = ["AFFINITY_FIELDS", "Who", "who"]

#: Metadata fields naming a conversation, in the order they are looked for.
AFFINITY_FIELDS = ("session_id", "conversation_id")
#: A priority given as text is read only up to this length (``int()`` of a long digit
#: string is slow).
_MAX_PRIORITY_TEXT = 40

logger = logging.getLogger("rotating_llm.litellm")


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


def _priority(value: Any, field: str) -> int | None:
    """``value`` as a priority, rounded and clipped; ``None`` (logged) if it is none."""
    number: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and len(value) <= _MAX_PRIORITY_TEXT:
        try:
            number = float(value)
        except ValueError:
            number = None
    if number is None or not math.isfinite(number):
        logger.debug("ignoring the request's %s: not a number (%s)", field, type(value).__name__)
        return None
    return max(-MAX_PRIORITY, min(MAX_PRIORITY, round(number)))


def _tenant(value: Any, field: str) -> str | None:
    """``value`` as a tenant: a short string as it is, a long one by its digest, an
    integer as its text; ``None`` (logged unless absent or empty) otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value) if abs(value) < 10**40 else None
    if not isinstance(value, str):
        if value is not None:
            logger.debug(
                "ignoring the request's %s: not a string (%s)", field, type(value).__name__
            )
        return None
    if len(value) > MAX_TENANT_LEN:
        digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
        return f"sha256:{digest}"
    return value or None


def who(request_kwargs: Mapping[str, Any] | None, sticky: bool) -> Who:
    """The request's priority, tenant and (``sticky``) affinity; never raises for what the
    client sent (see the module's docstring)."""
    if not request_kwargs:
        return Who()
    meta = metadata_of(request_kwargs)
    priority = None
    if meta.get("priority") is not None:
        priority = _priority(meta["priority"], "metadata.priority")
    if priority is None and request_kwargs.get("priority") is not None:
        theirs = _priority(request_kwargs["priority"], "priority")
        priority = None if theirs is None else -theirs
    tenant = _tenant(meta.get("tenant"), "metadata.tenant")
    if tenant is None:
        tenant = _tenant(request_kwargs.get("user"), "user")
    affinity = None
    if sticky:
        for name in AFFINITY_FIELDS:
            affinity = _text(meta.get(name))
            if affinity:
                break
        else:
            affinity = _text(request_kwargs.get("litellm_session_id"))
    return Who(priority or 0, tenant, affinity)
