"""Keys: the ``APIKey`` model, keys files, leases and the ``KeyManager``."""

from __future__ import annotations

from rotating_llm.keys.lease import FailureKind, Lease
from rotating_llm.keys.loader import load_keys_file, parse_keys, save_keys_file
from rotating_llm.keys.manager import KeyManager, get_key_manager, get_redis_limiter
from rotating_llm.keys.models import APIKey

__all__ = [
    "APIKey",
    "FailureKind",
    "KeyManager",
    "Lease",
    "get_key_manager",
    "get_redis_limiter",
    "load_keys_file",
    "parse_keys",
    "save_keys_file",
]
