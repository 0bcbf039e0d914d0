"""Where the limiter's state lives: Redis, Redis Cluster, or the embedded in-process store."""

from __future__ import annotations

from rotating_llm.storage._errors import translate_errors
from rotating_llm.storage._failover import FailoverStore
from rotating_llm.storage._store import Store, embedded_store, load_script, open_store, safe_url

__all__ = [
    "FailoverStore",
    "Store",
    "embedded_store",
    "load_script",
    "open_store",
    "safe_url",
    "translate_errors",
]
