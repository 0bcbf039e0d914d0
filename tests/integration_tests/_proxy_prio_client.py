"""One client process of the proxy's priority test: waits for its go file, then sends
``n`` chat calls at once (threads) through one proxy with the openai SDK, all of one
``metadata.priority``; prints each call's status, when it ended and the refusal's details."""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai

MODEL = "prio-pool"


def _one(client: openai.OpenAI, priority: int, i: int) -> dict[str, Any]:
    try:
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": f"p{priority} {i}"}],
            extra_body={"metadata": {"priority": priority}, "num_retries": 0},
        )
        return {"status": 200, "ended": time.time()}
    except openai.APIStatusError as exc:
        h = exc.response.headers
        return {
            "status": exc.status_code,
            "ended": time.time(),
            "message": str(exc),
            "retry_after": h.get("retry-after"),
            "position": h.get("x-rotating-llm-queue-position"),
            "expected_wait": h.get("x-rotating-llm-expected-wait"),
        }


if __name__ == "__main__":
    master, url, priority, n, ready, go = sys.argv[1:]
    client = openai.OpenAI(base_url=url, api_key=master, max_retries=0, timeout=60)
    client.models.list()  # (connected and authorised before the test starts the clock)
    Path(ready).touch()
    deadline = time.monotonic() + 120
    while not Path(go).exists():
        if time.monotonic() > deadline:
            sys.exit("no go file")
        time.sleep(0.005)
    with ThreadPoolExecutor(int(n)) as pool:
        out = list(pool.map(lambda i: _one(client, int(priority), i), range(int(n))))
    client.close()
    print(json.dumps(out))
