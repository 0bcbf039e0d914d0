"""The process's default key manager (the original design's ``get_key_manager``), light to import.

``from rotating_llm import get_key_manager`` loads only this module: the manager, the
store and redis-py load on the first call.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rotating_llm.keys.manager import KeyManager
    from rotating_llm.limiter import RedisLimiter
    from rotating_llm.secrets import SecretStore

__all__ = ["default_secret_store", "get_key_manager", "get_redis_limiter"]

_default: KeyManager | None = None
_default_lock = threading.Lock()


def get_key_manager(key_store_path: str | Path | None = None, **kwargs: Any) -> KeyManager:
    """The process's default manager; with arguments, a new one that becomes the default.

    Without arguments and no default yet, reads ``KEY_STORE_PATH`` (default ``./keys.json``)
    if that file exists.
    """
    from rotating_llm.config import Settings
    from rotating_llm.keys.manager import KeyManager

    global _default
    with _default_lock:
        if key_store_path is not None or kwargs or _default is None:
            if key_store_path is None and "keys" not in kwargs:
                settings = kwargs.get("settings") or Settings.from_env()
                kwargs["settings"] = settings
                if settings.key_store_path.exists():
                    key_store_path = settings.key_store_path
            _default = KeyManager(key_store_path=key_store_path, **kwargs)
        return _default


def get_redis_limiter() -> RedisLimiter:
    """The default manager's limiter (the original design's ``get_redis_limiter``)."""
    return get_key_manager().limiter


def default_secret_store() -> SecretStore:
    """The default manager's secret store, or a new one from the environment."""
    if _default is not None:
        return _default.secret_store
    from rotating_llm.config import Settings
    from rotating_llm.secrets import get_secret_store

    return get_secret_store(Settings.from_env())


def _reset_default() -> None:
    """Forget the default manager (tests)."""
    global _default
    with _default_lock:
        _default = None
