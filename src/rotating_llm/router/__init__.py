"""``RequestRouter``: the original design's ``send_chat`` / ``send_one_shot`` API.

A face over the LangChain face's engine (``RotatingChatModel``, one per pool) and the
core conversation store. Importing this package does not import LangChain; the first
send does.

``LLM_MULTI_KEY_ROUTER_ENABLED`` (``Settings.router_enabled``) is the off switch: rotation
over every key of a pool unless it is explicitly ``false``. Off: the legacy single-key
behaviour, each pool sends with its first active key only (same limiter, reservations and
failure handling; when that key is cooling down or disabled the pool is out of capacity).
``RequestRouter(rotation=...)`` overrides the setting.
"""

from __future__ import annotations

from rotating_llm.router._results import ERROR_TYPES, error_type
from rotating_llm.router._router import RequestRouter, get_request_router

__all__ = ["ERROR_TYPES", "RequestRouter", "error_type", "get_request_router"]
