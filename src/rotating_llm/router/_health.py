"""The router's health report: the key manager, the conversation store, Redis, secrets."""

from __future__ import annotations

from typing import Any

from rotating_llm.conversation import ConversationStore
from rotating_llm.errors import SecretStoreError
from rotating_llm.keys import KeyManager

__all__ = ["health_report"]


def _secrets_ok(manager: KeyManager) -> tuple[bool, str | None]:
    """Whether at least one active key's secret resolves (the value is never kept)."""
    last: str | None = None
    for key in manager.keys:
        if not key.active:
            continue
        try:
            manager.secret_store.get_secret(key.key_id)
        except SecretStoreError as exc:
            last = str(exc)
            continue
        return True, None
    return False, last or "no active keys"


def health_report(manager: KeyManager, store: ConversationStore, rotation: bool) -> dict[str, Any]:
    """``healthy`` when the store answers, keys are loaded and one active key's secret
    resolves, and the conversation store answers. Never raises."""
    try:
        km = manager.health_check()
    except Exception as exc:  # a broken manager is reported, not raised
        km = {"healthy": False, "store_ok": False, "error": f"{type(exc).__name__}: {exc}"}
    ok, why = _secrets_ok(manager)
    km["secrets_ok"] = ok
    if why is not None:
        km["secrets_error"] = why
    conv = store.health_check()
    redis = {
        "ok": bool(km.get("store_ok")) and bool(conv.get("healthy")),
        "kind": km.get("store"),
        "url": km.get("store_url"),
    }
    if not redis["ok"]:
        redis["error"] = km.get("error") or conv.get("error")
    healthy = bool(km.get("healthy")) and ok and bool(conv.get("healthy"))
    return {
        "healthy": healthy,
        "key_manager": km,
        "conversation_store": conv,
        "redis": redis,
        "rotation": rotation,
    }
