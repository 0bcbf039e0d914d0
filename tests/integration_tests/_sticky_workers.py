"""Worker of the multi-process sticky-key test (imported by spawned processes)."""

from __future__ import annotations

import warnings
from typing import Any

from langchain_core.chat_history import InMemoryChatMessageHistory

from rotating_llm import APIKey, KeyManager, Settings
from rotating_llm.langchain import RotatingChatModel
from rotating_llm.secrets import EnvSecretStore


def conversations(
    redis_url: str,
    prefix: str,
    keys: list[dict[str, Any]],
    secrets: dict[str, str],
    names: list[str],
    turns: int,
) -> dict[str, list[tuple[str, bool | None]]]:
    """Run ``turns`` turns of each conversation of ``names`` (interleaved) through
    ``RunnableWithMessageHistory``; (key_id, affinity_held) of every turn."""
    warnings.simplefilter("ignore")  # RunnableWithMessageHistory's deprecation
    from langchain_core.runnables.history import RunnableWithMessageHistory

    objs = [APIKey.model_validate(k) for k in keys]
    settings = Settings(redis_url=redis_url, key_prefix=prefix, max_wait=0)
    km = KeyManager(objs, settings=settings, secret_store=EnvSecretStore(secrets))
    llm = RotatingChatModel(model=objs[0].model_name, key_manager=km)
    stores: dict[str, InMemoryChatMessageHistory] = {}
    chat = RunnableWithMessageHistory(
        llm, lambda sid: stores.setdefault(sid, InMemoryChatMessageHistory())
    )
    out: dict[str, list[tuple[str, bool | None]]] = {n: [] for n in names}
    for i in range(turns):
        for name in names:
            reply = chat.invoke(f"turn {i}", {"configurable": {"session_id": name}})
            meta = reply.response_metadata
            out[name].append((meta["key_id"], meta.get("affinity_held")))
    llm.close()
    km.close()
    return out
