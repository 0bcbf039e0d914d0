"""What happens in the pool, as events: metrics and logs subscribe, the core stays plain.

Events (``name``: fields):

- ``lease.acquired``: model, key_id, estimated_tokens, waited (seconds), tier, quota_group
  for a key of a quota group, and affinity_held (True/False) when an affinity was asked
- ``lease.waiting``: model, seconds (until capacity returns), position (waiters ahead in
  the pool's queue, None if not queued); once per acquire that waits
- ``lease.refused``: model, reason (``exhausted`` or ``too_large``), retry_after
- ``lease.settled``: model, key_id, outcome (``complete``, ``release``, ``fail:<kind>``),
  tokens, quota_group (for a key of a quota group)
- ``group.cooldown``: model, quota_group, seconds, reason (every key of the group)
- ``key.cooldown``: model, key_id, seconds, reason
- ``key.disabled``: model, key_id, reason
- ``key.reenabled``: model, key_id, reason (the prober saw the provider accept it again)

No field ever holds a secret. A listener that raises is logged and ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

__all__ = ["Listener", "add_listener", "emit", "remove_listener"]

Listener = Callable[[str, dict[str, Any]], None]

logger = logging.getLogger("rotating_llm.events")
_listeners: list[Listener] = []


def add_listener(listener: Listener) -> None:
    """Call ``listener(name, fields)`` for every event from now on (once per listener)."""
    if listener not in _listeners:
        _listeners.append(listener)


def remove_listener(listener: Listener) -> None:
    """Stop calling ``listener``."""
    if listener in _listeners:
        _listeners.remove(listener)


def emit(name: str, **fields: Any) -> None:
    """Tell every listener about event ``name``; free when nobody listens."""
    if not _listeners:
        return
    for listener in list(_listeners):
        try:
            listener(name, fields)
        except Exception:
            logger.exception("event listener %r failed on %s", listener, name)
