"""Affinities: a conversation's id, as the acquire script stores it (a fixed-size digest).

A digest keeps the Redis key short and bounded whatever the id (of any length: a
conversation id found in a run's config is never refused for its size), and keeps the
id itself (which may name a user) out of Redis.
"""

from __future__ import annotations

import hashlib
from typing import Any

from rotating_llm.errors import ConfigError

__all__ = ["affinity_digest"]


def affinity_digest(value: Any) -> str:
    """The script's ``affinity`` argument for ``value`` (``None``: ``''``, no affinity).

    Raises:
        ConfigError: ``value`` is not a non-empty string.
    """
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ConfigError(f"affinity must be a string, got {type(value).__name__}")
    if not value:
        raise ConfigError("affinity must not be empty")
    return hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
