"""Where the limiter's state lives: Redis, Redis Cluster, or the embedded in-process store."""

from __future__ import annotations

from rotating_llm.storage._errors import translate_errors
from rotating_llm.storage._failover import FailoverStore
from rotating_llm.storage._open import open_store, safe_url
from rotating_llm.storage._store import Store, embedded_store, load_script
from rotating_llm.storage._timing import call_deadline

__all__ = [
    "FailoverStore",
    "Store",
    "call_deadline",
    "embedded_store",
    "load_script",
    "open_store",
    "safe_url",
    "translate_errors",
]
