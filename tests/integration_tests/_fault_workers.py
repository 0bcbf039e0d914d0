"""Helpers of the fault suite: a crash-safe redis-server and the workers spawned by it.

Workers are imported by bare name (``_fault_workers``) in spawned processes, which inherit
``sys.path`` from the test session.
"""

from __future__ import annotations

import logging
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import redis
from _redis_server import RedisProcess

MODEL = "gemini-2.5-flash"
FAST = {"backoff_base": 0.01, "backoff_max": 0.05}


class AofRedisProcess(RedisProcess):
    """``redis-server`` with ``appendfsync always``: every acknowledged write survives a kill."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        super().__init__(port)
        self.data_dir = data_dir

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--dir",
                str(self.data_dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.2)
                client.ping()
                client.close()
                return
            except redis.BusyLoadingError:
                time.sleep(0.05)
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")


def pool_keys(provider_url: str, n: int = 3) -> list[Any]:
    from rotating_llm import APIKey

    return [
        APIKey(
            key_id=f"k{i}",
            model_name=MODEL,
            provider="gemini",
            rpm=1_000_000,
            tpm=1_000_000_000,
            base_url=provider_url,
        )
        for i in range(n)
    ]


def _wait_for(path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.01)


def router_workload(
    redis_url: str,
    prefix: str,
    provider_url: str,
    worker: int,
    mode: str,
    control: str,
    retry_interval: float = 0.2,
) -> dict[str, Any]:
    """Alternate ``send_chat`` and ``send_one_shot`` through a ``RequestRouter`` until told
    to stop; record every call: wall-clock times, the result (or the exception), and
    where the limiter's reservation was made (real Redis, the in-process store, none).

    ``control`` is a directory: the worker writes ``ready-<worker>`` after a warm-up
    call, starts on ``go`` and stops on ``stop``.
    """
    from rotating_llm import KeyManager, Settings
    from rotating_llm.router import RequestRouter
    from rotating_llm.secrets import EnvSecretStore

    logging.getLogger("rotating_llm").setLevel(logging.ERROR)  # keep unexpected errors only
    ctl = Path(control)
    keys = pool_keys(provider_url)
    secrets = {f"API_KEY_{k.key_id.upper()}": f"sk-fault-{uuid.uuid4().hex}" for k in keys}
    settings = Settings(
        redis_url=redis_url,
        key_prefix=prefix,
        max_wait=2.0,
        on_store_failure=mode,
        store_retry_interval=retry_interval,
        router_enabled=True,
    )
    km = KeyManager(keys, settings=settings, secret_store=EnvSecretStore(secrets))
    last: dict[str, Any] = {}
    real_acquire = km.acquire

    def recording_acquire(*args: Any, **kw: Any) -> Any:
        lease = real_acquire(*args, **kw)
        res = lease.reservation
        last["reserved"] = lease.reserved
        last["embedded"] = None if res is None else res.store.is_embedded
        return lease

    km.acquire = recording_acquire  # type: ignore[method-assign]
    router = RequestRouter(km, chat_model_options={**FAST, "timeout": 5.0})
    records: list[dict[str, Any]] = []
    try:
        warm = router.send_one_shot(f"warm-up {worker}", MODEL)
        if not warm.get("success"):
            raise RuntimeError(f"warm-up failed: {warm}")
        (ctl / f"ready-{worker}").touch()
        _wait_for(ctl / "go", 120)
        n = 0
        while not (ctl / "stop").exists():
            chat = n % 2 == 0
            conv = f"w{worker}-c{(n // 2) % 3}"
            prompt = f"w{worker} n{n}"
            last.clear()
            record: dict[str, Any] = {"n": n, "chat": chat, "conv": conv, "prompt": prompt}
            record["t0"] = time.time()
            try:
                if chat:
                    result = router.send_chat(conv, prompt, model_preference=MODEL)
                else:
                    result = router.send_one_shot(prompt, model_preference=MODEL)
            except Exception as exc:  # what the test must never see
                record["unhandled"] = f"{type(exc).__name__}: {exc}"
                result = None
            record["t1"] = time.time()
            record["result"] = result
            record["reserved"] = last.get("reserved")
            record["embedded"] = last.get("embedded")
            records.append(record)
            n += 1
            time.sleep(0.01)
    finally:
        km.close()
    return {"worker": worker, "records": records}
