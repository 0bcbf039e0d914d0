"""A long-lived process with a KeyManager that beats a heartbeat; prints its member."""

from __future__ import annotations

import sys
import time

from rotating_llm import KeyManager, Settings
from rotating_llm.keys import APIKey
from rotating_llm.secrets import EnvSecretStore

if __name__ == "__main__":
    redis_url, prefix = sys.argv[1:3]
    key = APIKey(key_id="w0", model_name="m", provider="gemini", rpm=5, tpm=1000)
    settings = Settings(
        redis_url=redis_url, key_prefix=prefix, probe_seconds=0, heartbeat_seconds=0.3
    )
    km = KeyManager(
        [key], settings=settings, secret_store=EnvSecretStore(environ={"API_KEY_W0": "s"})
    )
    beat = km._heartbeat
    assert beat is not None
    print(f"member={beat.member}", flush=True)
    while True:
        time.sleep(0.2)
