"""Keys: the ``APIKey`` model, keys files, leases and the ``KeyManager``.

Names load on first use (PEP 562), so importing ``APIKey`` does not load the manager,
the store or redis-py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rotating_llm._lazy import lazy_names as _lazy_names

if TYPE_CHECKING:
    from rotating_llm.failures import FailureKind
    from rotating_llm.keys._default import get_key_manager, get_redis_limiter
    from rotating_llm.keys.lease import Lease
    from rotating_llm.keys.loader import load_keys_file, parse_keys, save_keys_file
    from rotating_llm.keys.manager import KeyManager
    from rotating_llm.keys.models import APIKey, QuotaGroup

_WHERE = {
    "APIKey": "rotating_llm.keys.models",
    "FailureKind": "rotating_llm.failures",
    "KeyManager": "rotating_llm.keys.manager",
    "Lease": "rotating_llm.keys.lease",
    "QuotaGroup": "rotating_llm.keys.models",
    "get_key_manager": "rotating_llm.keys._default",
    "get_redis_limiter": "rotating_llm.keys._default",
    "load_keys_file": "rotating_llm.keys.loader",
    "parse_keys": "rotating_llm.keys.loader",
    "save_keys_file": "rotating_llm.keys.loader",
}


__getattr__, __dir__ = _lazy_names(__name__, _WHERE, globals())


__all__ = [
    "APIKey",
    "FailureKind",
    "KeyManager",
    "Lease",
    "QuotaGroup",
    "get_key_manager",
    "get_redis_limiter",
    "load_keys_file",
    "parse_keys",
    "save_keys_file",
]
