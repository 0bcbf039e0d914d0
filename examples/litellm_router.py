"""A LiteLLM ``Router`` whose picks go through rotating-llm's shared limiter.

Runs against the bundled provider simulator (no real API key needed)::

    REDIS_URL=redis://127.0.0.1:6379/0 python examples/litellm_router.py

Without ``REDIS_URL`` the limiter runs in-process (limits then hold per process only).
Three deployments (one API key each) of the model group ``chat`` allow 3 requests per
10 seconds each; the script asks for 12 and shows that 9 are served, none refused by
the provider, and the other 3 are refused by the pool before they leave the process.
"""

from __future__ import annotations

import asyncio
import os
import uuid
import warnings

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network at import
warnings.simplefilter("ignore", ResourceWarning)

from litellm import Router  # noqa: E402

from rotating_llm.litellm import PoolExhaustedError, install  # noqa: E402
from rotating_llm.testing import FakeProvider  # noqa: E402

RPM, WINDOW = 3, 10.0


def model_list(api_base: str) -> list[dict[str, object]]:
    """One deployment per API key; ``rpm`` is the key's limit, ``model_info.id`` its name."""
    return [
        {
            "model_name": "chat",
            "litellm_params": {
                "model": "openai/gpt-4o-mini",
                "api_key": f"sk-example-{i}",
                "api_base": api_base,
                "rpm": RPM,
            },
            "model_info": {"id": f"key-{i}"},
        }
        for i in range(3)
    ]


async def main() -> None:
    with FakeProvider(rpm=RPM, window=WINDOW) as fp:
        router = Router(model_list=model_list(fp.openai_url), num_retries=1)
        pool = install(
            router,
            key_prefix=f"example-{uuid.uuid4().hex[:6]}:",
            window_seconds=WINDOW,  # the simulator's window; leave at 60 for real providers
            max_wait=0,  # refuse at once when the pool is full (default: wait up to 30 s)
        )
        messages = [{"role": "user", "content": "Hello from a pooled key"}]

        reply = router.completion(model="chat", messages=messages)  # the sync path
        print("sync:  ", reply.choices[0].message.content)

        stream = await router.acompletion(model="chat", messages=messages, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        print("stream:", text)

        async def ask(i: int) -> str:
            try:
                await router.acompletion(model="chat", messages=messages)
                return "served"
            except PoolExhaustedError as exc:
                return f"refused by the pool (capacity back in {exc.retry_after:.1f}s)"

        for i, outcome in enumerate(await asyncio.gather(*(ask(i) for i in range(10)))):
            print(f"async {i}:", outcome)

        while pool.settler.pending:  # callbacks settle leases in the background
            await asyncio.sleep(0.05)
        stats = fp.stats()
        print("provider served:", sum(s.served for s in stats.values()))
        print("provider 429s: ", sum(s.rate_limited for s in stats.values()))
        for status in pool.manager.get_all_key_statuses("chat"):
            print(f"  {status['key_id']}: {status['rpm_usage']}/{status['rpm_limit']} requests")
        await pool.aclose()


if __name__ == "__main__":
    asyncio.run(main())
