"""The pool the LangChain examples use: your keys file, or a local simulator.

With ``KEY_STORE_PATH`` pointing at a keys file (and secrets in ``API_KEY_<KEY_ID>``,
Redis in ``REDIS_URL``), the examples talk to the real providers. Without it, they start
``rotating_llm.testing.FakeProvider`` on loopback and give it three demo keys.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rotating_llm import APIKey, KeyManager, Settings
from rotating_llm.langchain import RotatingChatModel
from rotating_llm.secrets import EnvSecretStore

MODEL = os.environ.get("ROTATING_LLM_EXAMPLE_MODEL", "gemini-2.5-flash")


@contextmanager
def demo_model(**kwargs) -> Iterator[RotatingChatModel]:
    """A ``RotatingChatModel`` on the configured pool, or on the simulator."""
    path = os.environ.get("KEY_STORE_PATH")
    if path and Path(path).exists():
        llm = RotatingChatModel(model=MODEL, keys=path, **kwargs)
        try:
            yield llm
        finally:
            llm.manager.close()
        return

    from rotating_llm.testing import FakeProvider  # needs the "testing" extra

    with FakeProvider(rpm=2, window=60.0) as provider:
        keys = [
            APIKey(
                key_id=f"demo-{i}",
                model_name=MODEL,
                provider="gemini",
                rpm=2,
                tpm=100_000,
                base_url=provider.url,
            )
            for i in range(3)
        ]
        secrets = EnvSecretStore({f"API_KEY_DEMO_{i}": f"demo-secret-{i}" for i in range(3)})
        settings = Settings.from_env(key_prefix=f"example-{uuid.uuid4().hex[:8]}:")
        manager = KeyManager(keys, settings=settings, secret_store=secrets)
        print(f"(no KEY_STORE_PATH: using the simulator at {provider.url} with 3 demo keys)")
        try:
            yield RotatingChatModel(model=MODEL, key_manager=manager, **kwargs)
        finally:
            manager.close()
