"""A process that serves, gets a 429 and is refused on a shared pool (``top``'s rates).

Per run: on pool ``m`` three served requests (completed with the estimate, with other
tokens, and through the async path) and one 429; on pool ``r`` (one request a window)
one acquire that is either served or refused. Prints ``served-r`` or ``refused-r``.
"""

from __future__ import annotations

import asyncio
import sys

from rotating_llm import AllKeysExhaustedError, FailureKind, KeyManager


async def _served_async(km: KeyManager) -> None:
    lease = await km.aacquire("m")
    await lease.acomplete(3)
    await km.limiter.aflush()


if __name__ == "__main__":
    km = KeyManager(key_store_path=sys.argv[1])
    with km.acquire("m") as lease:
        lease.complete()  # the estimate: tokens unchanged
    with km.acquire("m") as lease:
        lease.complete(5)
    asyncio.run(_served_async(km))
    km.acquire("m").fail(FailureKind.RATE_LIMIT, retry_after=0.05)
    try:
        km.acquire("r", max_wait=0).complete()
        print("served-r", flush=True)
    except AllKeysExhaustedError:
        print("refused-r", flush=True)
    km.close()
