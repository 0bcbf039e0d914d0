"""One client process: ``n`` chat calls through the proxies with the openai SDK, round robin."""

from __future__ import annotations

import json
import sys

import openai

if __name__ == "__main__":
    master, n, *urls = sys.argv[1:]
    clients = [openai.OpenAI(base_url=u, api_key=master, max_retries=0) for u in urls]
    out = []
    for i in range(int(n)):
        client = clients[i % len(clients)]
        try:
            client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": f"hi {i}"}]
            )
            out.append({"status": 200, "retry_after": None})
        except openai.APIStatusError as exc:
            out.append(
                {"status": exc.status_code, "retry_after": exc.response.headers.get("retry-after")}
            )
    for c in clients:
        c.close()
    print(json.dumps(out))
