"""Affinities: a conversation's id, as the acquire script stores it (a fixed-size digest).

A digest keeps the Redis key short and bounded whatever the id, and keeps the id itself
(which may name a user) out of Redis.
"""

from __future__ import annotations

import hashlib
from typing import Any

from rotating_llm.errors import ConfigError

__all__ = ["MAX_AFFINITY", "affinity_digest"]

#: The longest affinity accepted (characters).
MAX_AFFINITY = 1024


def affinity_digest(value: Any) -> str:
    """The script's ``affinity`` argument for ``value`` (``None``: ``''``, no affinity).

    Raises:
        ConfigError: ``value`` is not a string of 1 to :data:`MAX_AFFINITY` characters.
    """
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ConfigError(f"affinity must be a string, got {type(value).__name__}")
    if not 0 < len(value) <= MAX_AFFINITY:
        raise ConfigError(f"affinity must be 1 to {MAX_AFFINITY} characters, got {len(value)}")
    return hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
