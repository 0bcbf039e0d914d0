"""Worker of test_face_async_blocking: runs ``RotatingChatModel.ainvoke`` and ``astream``
and the LiteLLM face (``install(router)`` + ``router.acompletion``, plain and with
``stream=True``) on one instrumented loop against the simulator and reports, as JSON on
stdout:

- ``blocking``: every loop step, after a warm-up, that used more than 10 ms of its
  thread's CPU time, or slept more than 10 ms: off the CPU without being runnable (a
  blocking read, connect, sleep or lock), less the CPU time other threads of this
  process used meanwhile (a wait for the GIL is another thread running). Preemption
  (runnable, waiting for a core: the kernel's run delay in ``/proc/thread-self/schedstat``)
  is the machine's load, not the step blocking; the loop's own wait in ``select`` is
  outside any step;
- ``sync_sockets``: every use of a blocking socket on the loop's thread from the first
  library call on (connection set-up included): the Redis connections that decide and
  settle must be asyncio ones;
- ``control``: the same instruments on a step that sleeps, one that spins and a sync
  Redis PING on the loop, which they must catch (else a zero above proves nothing).

Usage: ``python _face_block_worker.py REDIS_URL PREFIX GEMINI_URL OPENAI_URL``
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sys
import threading
import time
import warnings
from typing import Any

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
warnings.simplefilter("ignore")  # third-party deprecations and leaked sockets: not the subject

LIMIT = 0.010
ROUNDS, TASKS = 6, 8


def _run_delay() -> float:
    """Seconds this thread has spent runnable but waiting for a CPU (preempted)."""
    with open("/proc/thread-self/schedstat") as f:
        return int(f.read().split()[1]) / 1e9


class Instruments:
    """Per-step CPU and off-CPU time of the loop's thread, and blocking-socket use on it."""

    def __init__(self) -> None:
        self.loop_thread = threading.get_ident()
        self.steps = False
        self.sockets = False
        self.blocking: list[str] = []
        self.sync_sockets: list[str] = []
        self.measured = 0

    def wrap_steps(self) -> None:
        run = asyncio.events.Handle._run
        me = self

        def timed(handle: Any) -> None:
            if not me.steps:
                run(handle)
                return
            queued0 = _run_delay()
            cpu0, all0, wall0 = time.thread_time(), time.process_time(), time.perf_counter()
            try:
                run(handle)
            finally:
                wall = time.perf_counter() - wall0
                cpu = time.thread_time() - cpu0
                others = time.process_time() - all0 - cpu
                asleep = wall - cpu - (_run_delay() - queued0)
                blocked = asleep - others
                me.measured += 1
                if cpu > LIMIT or blocked > LIMIT:
                    me.blocking.append(
                        f"{handle!r}: cpu {cpu:.3f}s, asleep {asleep:.3f}s, "
                        f"other threads' cpu {others:.3f}s"
                    )

        asyncio.events.Handle._run = timed  # type: ignore[method-assign]

    def wrap_sockets(self) -> None:
        me = self
        for name in ("connect", "connect_ex", "send", "sendall", "recv", "recv_into", "sendmsg"):
            real = getattr(socket.socket, name)

            def checked(
                sock: socket.socket, *args: Any, _real: Any = real, _name: str = name
            ) -> Any:
                if (
                    me.sockets
                    and threading.get_ident() == me.loop_thread
                    and sock.gettimeout() != 0.0  # asyncio's sockets are non-blocking
                ):
                    peer = "?"
                    try:
                        peer = str(sock.getpeername()[1])
                    except OSError:
                        peer = str(args[0][1]) if args and isinstance(args[0], tuple) else "?"
                    me.sync_sockets.append(f"{_name} on a blocking socket to port {peer}")
                return _real(sock, *args)

            setattr(socket.socket, name, checked)


def build(redis_url: str, prefix: str, gemini_url: str, openai_url: str) -> tuple[Any, Any, Any]:
    from litellm import Router

    from rotating_llm import APIKey, KeyManager, Settings
    from rotating_llm.langchain import RotatingChatModel
    from rotating_llm.litellm import install
    from rotating_llm.secrets import EnvSecretStore

    keys = [
        APIKey(
            key_id=f"g{i}",
            model_name="gemini-2.5-flash",
            provider="gemini",
            rpm=100_000,
            tpm=10**9,
            base_url=gemini_url,
        )
        for i in range(2)
    ]
    km = KeyManager(
        keys,
        settings=Settings(redis_url=redis_url, key_prefix=prefix + "lc:", max_wait=5),
        secret_store=EnvSecretStore({f"API_KEY_G{i}": f"AIza-block-{i}-secret" for i in range(2)}),
    )
    llm = RotatingChatModel(model="gemini-2.5-flash", key_manager=km)
    router = Router(
        model_list=[
            {
                "model_name": "pool",
                "litellm_params": {
                    "model": "openai/gpt-fake",
                    "api_key": f"sk-block-{i}-secret",
                    "api_base": openai_url,
                    "rpm": 100_000,
                },
                "model_info": {"id": f"d{i}"},
            }
            for i in range(2)
        ]
    )
    installed = install(router, redis_url=redis_url, key_prefix=prefix + "ll:", max_wait=5)
    return llm, router, installed


#: Answers one round of :func:`calls` counts: ainvoke, astream, acompletion, streamed.
PER_ROUND = 4


async def calls(llm: Any, router: Any, n: int) -> int:
    """``n`` rounds of each async face's call, plain and streamed; answers that had text."""
    done = 0
    for i in range(n):
        msg = await llm.ainvoke(f"hello {i}")
        done += bool(msg.content)
        chunks = [chunk.content async for chunk in llm.astream(f"stream a story {i}")]
        done += len(chunks) > 1 and bool("".join(map(str, chunks)))
        messages = [{"role": "user", "content": f"hello {i}"}]
        resp = await router.acompletion(model="pool", messages=messages)
        done += bool(resp.choices[0].message.content)
        stream = await router.acompletion(model="pool", messages=messages, stream=True)
        parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        done += len(parts) > 1 and bool("".join(parts))
    return done


async def control(inst: Instruments, redis_url: str) -> dict[str, int]:
    """Steps the instruments must catch: a sleep, a spin, a sync Redis PING on the loop."""
    import redis

    before_b, before_s = len(inst.blocking), len(inst.sync_sockets)

    def sleeper() -> None:
        time.sleep(0.05)

    def spinner() -> None:
        end = time.thread_time() + 0.03
        while time.thread_time() < end:
            pass

    loop = asyncio.get_running_loop()
    loop.call_soon(sleeper)
    loop.call_soon(spinner)
    await asyncio.sleep(0.01)
    caught = len(inst.blocking) - before_b
    client = redis.Redis.from_url(redis_url)
    client.ping()
    client.close()
    return {"blocking": caught, "sync_sockets": len(inst.sync_sockets) - before_s}


async def main(redis_url: str, prefix: str, gemini_url: str, openai_url: str) -> dict[str, Any]:
    inst = Instruments()
    inst.wrap_steps()
    inst.wrap_sockets()
    llm, router, installed = build(redis_url, prefix, gemini_url, openai_url)
    inst.sockets = True  # from the first library call on: connection set-up included
    warm = await calls(llm, router, 6)  # provider models, SDK clients, tokenizer, secrets
    inst.steps = True
    results = await asyncio.gather(*(calls(llm, router, ROUNDS) for _ in range(TASKS)))
    inst.steps = False
    blocking, sync_sockets, measured = list(inst.blocking), list(inst.sync_sockets), inst.measured
    inst.steps = True
    checks = await control(inst, redis_url)
    inst.steps = inst.sockets = False
    await llm.aclose()
    await llm.manager.aclose()
    await installed.aclose()
    return {
        "per_round": PER_ROUND,
        "warm": warm,
        "served": sum(results),
        "measured_steps": measured,
        "blocking": blocking,
        "sync_sockets": sync_sockets,
        "control": checks,
    }


if __name__ == "__main__":
    logging.getLogger("LiteLLM").setLevel(logging.CRITICAL)
    logging.getLogger("LiteLLM Router").setLevel(logging.CRITICAL)
    report = asyncio.run(main(*sys.argv[1:5]))
    print(json.dumps(report))
