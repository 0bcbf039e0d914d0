"""Worker processes, each with its own LiteLLM ``Router``, for the LiteLLM face's tests.

LiteLLM takes seconds to import and leaves sockets and event loops for the garbage
collector, so every ``Router`` lives in a spawned worker: the pool imports LiteLLM once
per worker, and each test sends every worker one job (a router, a plugin, requests)
that starts behind a shared barrier. Results come back as plain dicts.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import time
import warnings
from collections import Counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.synchronize import Barrier

#: Bound on one job (seconds); a worker that does not answer in time fails the test.
JOB_TIMEOUT = 90.0
IDLE: dict[str, Any] = {"kind": "idle"}


def deployment(
    dep_id: str,
    api_key: str,
    api_base: str,
    *,
    model_name: str = "pool",
    rpm: int | None = None,
    tpm: int | None = None,
) -> dict[str, Any]:
    """One ``model_list`` entry (one API key) on the simulator's OpenAI endpoint."""
    params: dict[str, Any] = {"model": "openai/gpt-fake", "api_key": api_key, "api_base": api_base}
    if rpm is not None:
        params["rpm"] = rpm
    if tpm is not None:
        params["tpm"] = tpm
    return {"model_name": model_name, "litellm_params": params, "model_info": {"id": dep_id}}


def _setup_process() -> None:
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    warnings.simplefilter("ignore")  # LiteLLM's unclosed sockets: not this test's subject
    import logging

    logging.getLogger("LiteLLM").setLevel(logging.CRITICAL)
    logging.getLogger("LiteLLM Router").setLevel(logging.CRITICAL)


def _error_name(exc: BaseException) -> str:
    return type(exc).__name__


async def _one_async(router: Any, job: dict[str, Any], i: int) -> tuple[str, str | None]:
    messages = [{"role": "user", "content": f"{job.get('message', 'hello')} {i}"}]
    kwargs = dict(job.get("call_kwargs") or {})
    try:
        if job["mode"] == "stream":
            stream = await router.acompletion(
                model=job.get("model", "pool"),
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
                **kwargs,
            )
            parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
            return "ok", "".join(parts)
        resp = await router.acompletion(model=job.get("model", "pool"), messages=messages, **kwargs)
        return "ok", resp.choices[0].message.content
    except Exception as exc:
        return _error_name(exc), None


def _one_sync(router: Any, job: dict[str, Any], i: int) -> tuple[str, str | None]:
    messages = [{"role": "user", "content": f"{job.get('message', 'hello')} {i}"}]
    try:
        resp = router.completion(
            model=job.get("model", "pool"), messages=messages, **dict(job.get("call_kwargs") or {})
        )
        return "ok", resp.choices[0].message.content
    except Exception as exc:
        return _error_name(exc), None


def _build_router(job: dict[str, Any]) -> tuple[Any, Any]:
    from litellm import Router

    kwargs: dict[str, Any] = {"model_list": job["model_list"], "num_retries": job.get("retries", 0)}
    kwargs.update(job.get("router_kwargs") or {})
    router = Router(**kwargs)
    routing = job.get("routing", "plugin")
    if routing == "filter":  # the proxy's way: a callback from litellm_settings.callbacks
        from rotating_llm.litellm import RotatingFilter

        flt = RotatingFilter(
            redis_url=job["redis_url"],
            key_prefix=job["prefix"],
            window_seconds=job["window"],
            max_wait=job.get("max_wait", 0.0),
        )
        flt.register()
        return router, _FilterHandle(flt)
    if routing != "plugin":
        return router, None
    from rotating_llm.litellm import install

    installed = install(
        router,
        redis_url=job["redis_url"],
        key_prefix=job["prefix"],
        window_seconds=job["window"],
        max_wait=job.get("max_wait", 0.0),
        **dict(job.get("install_kwargs") or {}),
    )
    return router, installed


class _FilterHandle:
    """A ``RotatingFilter`` seen through the same attributes as ``install``'s result."""

    def __init__(self, flt: Any) -> None:
        self.settler = flt
        self.manager = flt.manager
        self.close = flt.close
        self.aclose = flt.aclose


def run_job(job: dict[str, Any], barrier: Barrier | None) -> dict[str, Any]:
    """Run one job in this process and describe what happened."""
    if job["kind"] == "idle":
        if barrier is not None:
            barrier.wait(JOB_TIMEOUT)
        return {"kind": "idle"}
    router, installed = _build_router(job)
    if barrier is not None:
        barrier.wait(JOB_TIMEOUT)
    n = int(job["requests"])
    report: dict[str, Any] = {}
    if job["mode"] == "sync":
        outcomes = [_one_sync(router, job, i) for i in range(n)]
    else:

        async def main() -> list[tuple[str, str | None]]:
            sem = asyncio.Semaphore(int(job.get("concurrency", 4)))

            async def limited(i: int) -> tuple[str, str | None]:
                async with sem:
                    return await _one_async(router, job, i)

            out = await asyncio.gather(*(limited(i) for i in range(n)))
            if installed is not None:
                deadline = time.monotonic() + 10
                while installed.settler.pending and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                report.update(_report(installed))
                await installed.aclose()
            return list(out)

        outcomes = asyncio.run(main())
    if job["mode"] == "sync" and installed is not None:
        deadline = time.monotonic() + 10
        while installed.settler.pending and time.monotonic() < deadline:
            time.sleep(0.05)
        report = _report(installed)
        installed.close()
    return {
        "kind": "run",
        "outcomes": dict(Counter(kind for kind, _ in outcomes)),
        "texts": [t for _, t in outcomes if t is not None],
        "pid": os.getpid(),
        **report,
    }


def _report(installed: Any) -> dict[str, Any]:
    return {
        "open_leases": installed.settler.pending,
        "settled": dict(installed.settler.settled),
        "statuses": {
            s["key_id"]: {k: s[k] for k in ("disabled", "in_cooldown", "rpm_usage", "tpm_usage")}
            for s in installed.manager.get_all_key_statuses()
        },
    }


def _worker_main(conn: Connection, barrier: Barrier) -> None:
    _setup_process()
    import litellm  # noqa: F401 - imported once per worker, before the first job

    import rotating_llm.litellm  # noqa: F401

    conn.send("ready")
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        try:
            conn.send(run_job(job, barrier))
        except BaseException as exc:
            with contextlib.suppress(Exception):
                conn.send({"kind": "error", "error": f"{type(exc).__name__}: {exc}"})
            if not isinstance(exc, Exception):
                raise


class RouterWorkers:
    """``n`` spawned processes that each run one job per :meth:`run`, started together."""

    def __init__(self, n: int = 4) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.n = n
        self.barrier = ctx.Barrier(n)
        self._conns: list[Connection] = []
        self._procs: list[Any] = []
        for i in range(n):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_worker_main, args=(child, self.barrier), name=f"litellm-{i}", daemon=True
            )
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)
        for conn in self._conns:
            if not conn.poll(JOB_TIMEOUT):
                self.close()
                raise RuntimeError("a LiteLLM worker did not start in time")
            assert conn.recv() == "ready"

    def run(self, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Give worker ``i`` ``jobs[i]`` (idle jobs fill the rest); return their results."""
        assert len(jobs) <= self.n
        padded = jobs + [IDLE] * (self.n - len(jobs))
        for conn, job in zip(self._conns, padded, strict=True):
            conn.send(job)
        results = []
        for conn in self._conns:
            if not conn.poll(JOB_TIMEOUT):
                self.barrier.abort()
                raise RuntimeError("a LiteLLM worker did not finish its job in time")
            results.append(conn.recv())
        errors = [r["error"] for r in results if r["kind"] == "error"]
        if errors:
            self.barrier.reset()
            raise RuntimeError(f"worker job failed: {errors}")
        return results[: len(jobs)]

    def close(self) -> None:
        """Stop every worker."""
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.send(None)
        for proc in self._procs:
            proc.join(3)  # LiteLLM's logging threads may keep a worker up: not worth waiting for
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
        for conn in self._conns:
            conn.close()
