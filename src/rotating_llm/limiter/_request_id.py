"""Request ids: one per logical acquire attempt, so a resent acquire is not a second one.

An id is this process's random prefix and a counter (cheap on the hot path); the
prefix is drawn again in a forked child, so parent and child never share an id. An id
given by a caller is checked here, before it reaches Lua, where it becomes part of a key.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
from typing import Any

from rotating_llm.errors import ConfigError

__all__ = ["MAX_REQUEST_ID", "check_request_id", "new_request_id"]

#: The longest request id accepted (characters).
MAX_REQUEST_ID = 64
_SAFE = re.compile(r"[A-Za-z0-9_.-]+")


class _Ids:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.prefix = secrets.token_urlsafe(12) + "."
        self.counter = itertools.count(1)


_ids = _Ids()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_ids.reset)


def new_request_id() -> str:
    """A new id, unique across processes (16 random characters, then a counter)."""
    return _ids.prefix + format(next(_ids.counter), "x")


def check_request_id(value: Any) -> str:
    """``value`` if it is a usable request id (1-64 of ``A-Z a-z 0-9 _ . -``), else
    :class:`ConfigError`."""
    if not isinstance(value, str):
        raise ConfigError(f"request_id must be a string, got {type(value).__name__}")
    if len(value) > MAX_REQUEST_ID or not _SAFE.fullmatch(value):
        raise ConfigError(
            f"request_id must be 1 to {MAX_REQUEST_ID} of the characters A-Z a-z 0-9 _ . -, "
            f"got {value!r:.80}"
        )
    return value
