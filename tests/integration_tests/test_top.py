"""``rotating-llm keys test`` and ``rotating-llm top`` as subprocesses against Redis and the simulator."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rotating_llm.testing import FakeProvider

pytestmark = [pytest.mark.redis, pytest.mark.multiprocess]

SECRETS = {"API_KEY_T0": "sim-t0-secret-value", "API_KEY_T1": "sim-t1-secret-value"}


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    with FakeProvider() as fp:
        yield fp


@pytest.fixture
def keys_file(tmp_path: Path, provider: FakeProvider) -> Path:
    path = tmp_path / "keys.json"
    keys = [
        {
            "key_id": "t0",
            "model_name": "m",
            "provider": "gemini",
            "rpm": 5,
            "tpm": 100,
            "base_url": provider.url,
            "tags": {"group": "blue"},
        },
        {
            "key_id": "t1",
            "model_name": "m",
            "provider": "openai",
            "rpm": 5,
            "tpm": 100,
            "base_url": provider.openai_url,
        },
    ]
    path.write_text(json.dumps({"keys": keys}))
    return path


def _env(redis_url: str, prefix: str, keys_file: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("API_KEY_")}
    env.update(
        SECRETS, REDIS_URL=redis_url, ROTATING_LLM_KEY_PREFIX=prefix, KEY_STORE_PATH=str(keys_file)
    )
    return env


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rotating_llm", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_keys_test_verdicts_and_exit_code(
    redis_url: str, prefix: str, keys_file: Path, provider: FakeProvider
) -> None:
    env = _env(redis_url, prefix, keys_file)
    ok = _cli(env, "keys", "test", "--all")
    assert ok.returncode == 0, ok.stderr
    assert "t0: accepted" in ok.stdout and "t1: accepted" in ok.stdout
    provider.revoke("sim-t1-secret-value")
    bad = _cli(env, "keys", "test", "--all")
    assert bad.returncode == 1
    assert "t1: rejected (HTTP 401)" in bad.stdout and "t0: accepted" in bad.stdout
    one = _cli(env, "keys", "test", "t0", "--json")
    assert one.returncode == 0
    assert json.loads(one.stdout)[0]["accepted"] is True
    for out in (ok, bad, one):
        assert "secret-value" not in out.stdout + out.stderr
    assert _cli(env, "keys", "test").returncode == 2  # neither KEY nor --all
    assert _cli(env, "keys", "test", "nope").returncode == 2
    # the command never takes part in the prober election
    import redis

    r = redis.Redis.from_url(redis_url)
    assert r.get(f"{prefix}prober:lock") is None
    r.close()


def test_top_json_once(redis_url: str, prefix: str, keys_file: Path) -> None:
    env = _env(redis_url, prefix, keys_file)
    assert _cli(env, "keys", "disable", "t1", "--reason", "bad").returncode == 0
    out = _cli(env, "top", "--json")
    assert out.returncode == 0, out.stderr
    snap = json.loads(out.stdout)
    rows = {r["key_id"]: r for r in snap["pools"]["m"]}
    assert rows["t0"]["state"] == "ready" and rows["t0"]["group"] == "blue"
    assert rows["t1"]["state"] == "disabled" and rows["t1"]["reason"] == "bad"
    assert rows["t0"]["rpm"] == [0, 5]
    assert snap["queues"] == {"m": 0}


def test_top_shows_the_queue_of_waiters(redis_url: str, prefix: str, keys_file: Path) -> None:
    """Two callers of another process wait for capacity: top counts their tickets."""
    from rotating_llm import KeyManager, Settings
    from rotating_llm.secrets import EnvSecretStore

    settings = Settings(redis_url=redis_url, key_prefix=prefix)
    km = KeyManager(
        key_store_path=keys_file, settings=settings, secret_store=EnvSecretStore(SECRETS)
    )
    leases = [km.acquire("m", 1, max_wait=0) for _ in range(10)]  # the pool is full
    outcomes: list[str] = []

    def wait_in_line() -> None:
        lease = km.acquire("m", 1, max_wait=90)  # (capacity returns in 60 s)
        outcomes.append(lease.key_id)
        lease.release()

    waiters = [threading.Thread(target=wait_in_line) for _ in range(2)]
    try:
        for t in waiters:
            t.start()
        snap: dict[str, object] = {}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # until both tickets are taken
            snap = json.loads(_cli(_env(redis_url, prefix, keys_file), "top", "--json").stdout)
            if snap["queues"] == {"m": 2}:
                break
        assert snap["queues"] == {"m": 2}
    finally:
        for lease in leases:
            lease.release()  # capacity returns: the waiters are served
        for t in waiters:
            t.join(timeout=30)
        km.close()
    assert len(outcomes) == 2


def test_top_full_screen_refreshes(redis_url: str, prefix: str, keys_file: Path) -> None:
    env = _env(redis_url, prefix, keys_file)
    env.update(COLUMNS="160", LINES="20", TERM="xterm")
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rotating_llm", "top", "--iterations", "2", "--interval", "0.2"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    data = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
        elif proc.poll() is not None:
            break
    assert proc.wait(timeout=10) == 0
    os.close(master)
    text = data.decode(errors="replace")
    assert "\x1b[?1049h" in text  # the alternate (full) screen
    assert text.count("rotating-llm top") >= 2  # refreshed
    assert "t0" in text and "ready" in text
    assert "secret-value" not in text


def test_top_and_health_show_live_processes_and_health_fails_with_every_key_disabled(
    redis_url: str, prefix: str, keys_file: Path
) -> None:
    env = _env(redis_url, prefix, keys_file)
    worker = str(Path(__file__).with_name("_heartbeat_worker.py"))
    proc = subprocess.Popen(
        [sys.executable, worker, redis_url, prefix], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("member=")
        snap = json.loads(_cli(env, "top", "--json").stdout)
        assert snap["processes"] == {"m": 1}  # the worker; top itself is not long-lived
        out = _cli(env, "health", "--json")
        report = json.loads(out.stdout)
        assert out.returncode == 0, report["problems"]
        assert report["mode"] == "redis" and report["live_processes"] == 1
        for kid in ("t0", "t1"):
            assert _cli(env, "keys", "disable", kid).returncode == 0
        out = _cli(env, "health")
        assert out.returncode == 1
        assert "no active keys" in out.stdout
    finally:
        proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
