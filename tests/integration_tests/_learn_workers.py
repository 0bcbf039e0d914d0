"""Worker of the learned-limits proofs: a process calling ``RotatingChatModel`` against the
simulator for a while, recording every lease it settled (imported by spawned processes)."""

from __future__ import annotations

import time
from typing import Any

from rotating_llm import APIKey, KeyManager, QuotaGroup, Settings
from rotating_llm.events import add_listener
from rotating_llm.secrets import EnvSecretStore


def build(spec: dict[str, Any]) -> KeyManager:
    """A manager of ``spec``'s keys (and groups) on its Redis, prefix and window."""
    keys = [APIKey.model_validate(k) for k in spec["keys"]]
    groups = [QuotaGroup.model_validate(g) for g in spec.get("quota_groups", [])]
    settings = Settings(
        redis_url=spec["redis_url"],
        key_prefix=spec["prefix"],
        window_seconds=spec["window"],
        max_wait=spec["window"] * 2,
        heartbeat_seconds=0,
        probe_seconds=0,
    )
    return KeyManager(
        keys,
        quota_groups=groups,
        settings=settings,
        secret_store=EnvSecretStore(spec["secrets"]),
        probe=False,
    )


def warm_up(spec: dict[str, Any]) -> None:
    """One call with a key outside the pool: the first call of a process is slow (imports,
    clients), longer than a test's short window, which a request must never take."""
    first = spec["keys"][0]
    args = {"model": spec["model"], "api_key": "warm-up", "base_url": first["base_url"]}
    if first["provider"] == "openai":
        from langchain_openai import ChatOpenAI

        ChatOpenAI(**args, max_retries=0).invoke("hi")
    else:
        from langchain_google_genai import ChatGoogleGenerativeAI

        ChatGoogleGenerativeAI(**args, max_retries=1).invoke("hi")


def work(spec: dict[str, Any], ready: Any, seconds: float, out: Any) -> None:
    """:func:`run` once every worker passed the barrier ``ready``; the result into ``out``."""
    out.put(run(spec, ready, seconds))


def run(spec: dict[str, Any], ready: Any, seconds: float) -> list[tuple[float, str, str]]:
    """Call the model for ``seconds`` from when every worker is ready (the barrier
    ``ready``); every settled lease as ``(wall time, key id, outcome)`` (``complete``,
    ``fail:rate_limit``, ...)."""
    from rotating_llm.langchain import RotatingChatModel

    km = build(spec)
    km.limiter.register_all()
    seen: list[tuple[float, str, str]] = []

    def listen(name: str, fields: dict[str, Any]) -> None:
        if name == "lease.settled":
            seen.append((time.time(), str(fields["key_id"]), str(fields["outcome"])))
        elif name == "lease.acquired" and spec.get("trace"):
            seen.append((time.time(), str(fields["key_id"]), "acquired"))

    add_listener(listen)
    llm = RotatingChatModel(model=spec["model"], key_manager=km, max_attempts=20)
    warm_up(spec)
    ready.wait()
    until = time.time() + seconds
    while time.time() < until:
        try:
            llm.invoke("hi")
        except Exception as exc:  # a refusal after waiting: recorded as such
            seen.append((time.time(), "-", f"error:{type(exc).__name__}"))
    km.close()
    return seen
