"""A long-lived process with a KeyManager that takes part in the prober election."""

from __future__ import annotations

import sys
import time

from rotating_llm import KeyManager, Settings
from rotating_llm.keys import APIKey
from rotating_llm.secrets import EnvSecretStore

if __name__ == "__main__":
    redis_url, prefix, base_url = sys.argv[1:4]
    key = APIKey(key_id="w0", model_name="m", provider="gemini", rpm=5, tpm=1000, base_url=base_url)
    settings = Settings(redis_url=redis_url, key_prefix=prefix, probe_seconds=0.5)
    km = KeyManager(
        [key], settings=settings, secret_store=EnvSecretStore(environ={"API_KEY_W0": "s"})
    )
    prober = km._prober
    assert prober is not None
    print(f"token={prober._token}", flush=True)
    while True:
        time.sleep(0.2)
