"""The environment the seed examples run in: your keys file, or a local simulator.

With ``KEY_STORE_PATH`` naming an existing keys file (secrets in ``API_KEY_<KEY_ID>`` or
your ``SECRET_STORE_TYPE``, Redis in ``REDIS_URL``), the examples use it as they are.
Without it, :func:`seed_environment` starts ``rotating_llm.testing.FakeProvider`` on
loopback, writes the original design's ``keys.json`` (two flash keys, one pro key)
pointing at it, puts demo secrets in the environment and turns the multi-key router on;
everything is put back on exit. ``REDIS_URL`` unset: the embedded store.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: The original design's keys.json (its step 4), without endpoints.
SEED_KEYS = [
    {
        "key_id": "gemini-flash-01",
        "model_name": "gemini-2.5-flash",
        "provider": "gemini",
        "rpm": 10,
        "tpm": 250000,
        "rpd": 1500,
        "active": True,
        "tags": {"tier": "free", "pool": "flash"},
    },
    {
        "key_id": "gemini-flash-02",
        "model_name": "gemini-2.5-flash",
        "provider": "gemini",
        "rpm": 10,
        "tpm": 250000,
        "active": True,
        "tags": {"tier": "free", "pool": "flash"},
    },
    {
        "key_id": "gemini-pro-01",
        "model_name": "gemini-2.5-pro",
        "provider": "gemini",
        "rpm": 5,
        "tpm": 100000,
        "rpd": 50,
        "active": True,
        "tags": {"tier": "free", "pool": "pro"},
    },
]


@contextmanager
def seed_environment() -> Iterator[Path]:
    """Yield the keys file to use: ``KEY_STORE_PATH``, or one on the simulator."""
    configured = os.environ.get("KEY_STORE_PATH")
    if configured and Path(configured).exists():
        yield Path(configured)
        return

    from rotating_llm.testing import FakeProvider  # needs the "testing" extra

    saved = dict(os.environ)
    with FakeProvider(rpm=10, window=60.0) as provider, tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "keys.json"
        keys = [{**k, "base_url": provider.url} for k in SEED_KEYS]
        path.write_text(json.dumps({"keys": keys}, indent=2))
        for key in SEED_KEYS:
            var = "API_KEY_" + str(key["key_id"]).upper().replace("-", "_")
            os.environ[var] = f"AIza-demo-{uuid.uuid4().hex}"
        os.environ["KEY_STORE_PATH"] = str(path)
        os.environ.setdefault("SECRET_STORE_TYPE", "env")
        os.environ.setdefault("ROTATING_LLM_KEY_PREFIX", f"seed-{uuid.uuid4().hex[:8]}:")
        print(f"(no KEY_STORE_PATH: the simulator at {provider.url} serves the seed's keys)")
        try:
            yield path
        finally:
            os.environ.clear()
            os.environ.update(saved)
