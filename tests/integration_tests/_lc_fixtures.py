"""Helpers for the LangChain-face tests: a simulator, a pool of keys on it, secrets.

Imported explicitly by the tests that use them (the lead owns the conftest files).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

from rotating_llm import APIKey, KeyManager, Settings
from rotating_llm.secrets import EnvSecretStore
from rotating_llm.testing import FakeProvider

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
FLASH = "gemini-2.5-flash"
PRO = "gemini-2.5-pro"
GPT = "gpt-4o-mini"

#: google-genai's async client subclasses aiohttp.ClientSession, which aiohttp deprecates.
AIOHTTP_INHERITANCE = (
    "ignore:Inheritance class AiohttpClientSession from ClientSession:DeprecationWarning"
)


def redis_url() -> str:
    """The real Redis the tests use."""
    return os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL


def unique_prefix() -> str:
    """A key prefix no other test uses."""
    return f"t{uuid.uuid4().hex[:12]}:"


@dataclass
class Pool:
    """Keys on one simulator, their secrets and a manager on the real Redis."""

    provider: FakeProvider
    keys: list[APIKey]
    secrets: dict[str, str]
    manager: KeyManager
    prefix: str
    extra: dict[str, Any] = field(default_factory=dict)

    def secret(self, key_id: str) -> str:
        """The secret of ``key_id``."""
        return self.secrets[f"API_KEY_{key_id.upper().replace('-', '_')}"]

    def stats(self, key_id: str) -> Any:
        """The simulator's counters for ``key_id``."""
        return self.provider.key_stats(self.secret(key_id))

    def status(self, key_id: str) -> dict[str, Any]:
        """The manager's status of ``key_id``."""
        return self.manager.get_key_status(key_id)


def make_keys(
    provider: FakeProvider,
    n: int,
    *,
    model: str = FLASH,
    kind: str = "gemini",
    prefix: str = "k",
    rpm: int = 100,
    tpm: int = 1_000_000,
    rpd: int | None = None,
) -> list[APIKey]:
    """``n`` keys pointing at ``provider`` (Gemini URL or OpenAI URL by ``kind``)."""
    url = provider.url if kind == "gemini" else provider.openai_url
    return [
        APIKey(
            key_id=f"{prefix}{i}",
            model_name=model,
            provider=kind,
            rpm=rpm,
            tpm=tpm,
            rpd=rpd,
            base_url=url,
        )
        for i in range(n)
    ]


def secrets_for(keys: list[APIKey]) -> dict[str, str]:
    """Recognisable test secrets for ``keys``, as the env secret store reads them."""
    return {
        f"API_KEY_{k.key_id.upper().replace('-', '_')}": f"sk-secret-{k.key_id}-{uuid.uuid4().hex}"
        for k in keys
    }


def make_manager(keys: list[APIKey], secrets: dict[str, str], **settings: Any) -> KeyManager:
    """A manager on the real Redis with a unique prefix (``max_wait=0`` unless given)."""
    opts: dict[str, Any] = {
        "redis_url": redis_url(),
        "key_prefix": unique_prefix(),
        "max_wait": 0,
    }
    opts.update(settings)
    return KeyManager(keys, settings=Settings(**opts), secret_store=EnvSecretStore(secrets))


@contextmanager
def pool(
    n: int = 3,
    *,
    provider: FakeProvider | None = None,
    kind: str = "gemini",
    model: str = FLASH,
    key_rpm: int = 100,
    key_tpm: int = 1_000_000,
    key_rpd: int | None = None,
    **settings: Any,
) -> Iterator[Pool]:
    """A running simulator (or ``provider``) and ``n`` keys of one pool on it."""
    own = provider is None
    fp = provider or FakeProvider(window=60.0)
    if own:
        fp.start()
    try:
        keys = make_keys(fp, n, model=model, kind=kind, rpm=key_rpm, tpm=key_tpm, rpd=key_rpd)
        secrets = secrets_for(keys)
        manager = make_manager(keys, secrets, **settings)
        try:
            yield Pool(fp, keys, secrets, manager, manager.settings.key_prefix)
        finally:
            manager.close()
    finally:
        if own:
            fp.stop()


@asynccontextmanager
async def apool(n: int = 3, **kw: Any) -> AsyncIterator[Pool]:
    """:func:`pool` for async tests: also closes the running loop's Redis connections."""
    with pool(n, **kw) as p:
        try:
            yield p
        finally:
            await p.manager.limiter.aclose()  # the loop's settlement connection
            await p.manager.store.primary.aclose()
