"""Health that tells the truth: real scripts, live processes, named problems (real Redis)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from _redis_server import RedisProcess

from conftest import make_keys, secrets_for
from rotating_llm import KeyManager, Settings
from rotating_llm.keys._heartbeat import live_members
from rotating_llm.secrets import EnvSecretStore

pytestmark = pytest.mark.redis

WORKER = str(Path(__file__).with_name("_heartbeat_worker.py"))


def _manager(url: str, prefix: str, n: int = 2, **settings: object) -> KeyManager:
    keys = make_keys(n)
    opts: dict[str, object] = {"redis_url": url, "key_prefix": prefix, "max_wait": 0}
    opts.update(probe_seconds=0, **settings)
    return KeyManager(
        keys,
        settings=Settings(**opts),
        secret_store=EnvSecretStore(secrets_for(keys)),  # type: ignore[arg-type]
    )


def test_healthy_pool_reports_redis_a_live_process_and_reserves_nothing(
    redis_url: str, prefix: str
) -> None:
    km = _manager(redis_url, prefix)
    lease = km.acquire("m", 5)
    lease.complete(5)
    before = [s["rpm_usage"] for s in km.get_all_key_statuses()]
    report = km.health_check()
    after = [s["rpm_usage"] for s in km.get_all_key_statuses()]
    km.close()
    assert report["healthy"] is True, report["problems"]
    assert report["mode"] == "redis"
    assert report["live_processes"] >= 1
    assert report["pools"]["m"]["active_keys"] == 2
    assert report["pools"]["m"]["can_admit_now"] is True
    assert before == after and sum(before) == 1


def test_all_keys_disabled_is_unhealthy_and_says_no_active_keys(
    redis_url: str, prefix: str
) -> None:
    km = _manager(redis_url, prefix)
    km.disable_key("k0")
    km.disable_key("k1")
    report = km.health_check()
    km.close()
    assert report["healthy"] is False
    assert any("no active keys" in p for p in report["problems"])
    assert report["active_keys"] == 0


@pytest.fixture(scope="module")
def no_scripting_redis() -> Iterator[RedisProcess]:
    server = RedisProcess()
    server.start()
    admin = redis.Redis(host="127.0.0.1", port=server.port)
    admin.execute_command(
        "ACL", "SETUSER", "noscript", "on", ">pw-noscript", "~*", "+@all",
        "-eval", "-evalsha", "-fcall", "-function", "-script",
    )  # fmt: skip
    yield server
    server.stop()


def test_acl_without_scripting_is_unhealthy_and_names_scripting(
    no_scripting_redis: RedisProcess, prefix: str
) -> None:
    url = f"redis://noscript:pw-noscript@127.0.0.1:{no_scripting_redis.port}/0"
    km = _manager(url, prefix)
    report = km.health_check()
    km.close()
    assert report["store_ok"] is True  # PING alone would have said healthy
    assert report["healthy"] is False
    assert any("scripting" in p and "EVAL" in p for p in report["problems"]), report
    assert "pw-noscript" not in str(report)


def _start_worker(redis_url: str, prefix: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, WORKER, redis_url, prefix], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip().removeprefix("member=")


def _wait(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


@pytest.mark.multiprocess
def test_two_processes_count_two_and_a_dead_one_expires(redis_url: str, prefix: str) -> None:
    procs = [_start_worker(redis_url, prefix) for _ in range(2)]
    try:
        members = {m for _, m in procs}
        assert len(members) == 2 and all(members)
        probe = _manager(redis_url, prefix, n=1)  # long-lived: it beats for pool "m" too
        store = probe.store.primary
        # the test's own manager beats too; the workers are the two others
        assert members <= live_members(store, "m")
        report = probe.health_check()
        assert report["live_processes"] == 3
        dead, dead_member = procs[0]
        dead.kill()  # SIGKILL: no atexit, the beat must expire by itself
        dead.wait(timeout=10)
        assert _wait(lambda: dead_member not in live_members(store, "m"), timeout=5.0)
        assert procs[1][1] in live_members(store, "m")
        probe.close()
        assert probe._heartbeat is not None
        assert probe._heartbeat.member not in live_members(store, "m")  # close takes it out
    finally:
        for p, _ in procs:
            p.kill()
            p.wait(timeout=10)
            if p.stdout is not None:
                p.stdout.close()


def test_cluster_health_runs_the_scripts_and_counts_its_heartbeat(
    cluster_url: str, prefix: str
) -> None:
    keys = make_keys(2)
    km = KeyManager(
        keys,
        settings=Settings(
            redis_url=cluster_url, redis_cluster=True, key_prefix=prefix, probe_seconds=0
        ),
        secret_store=EnvSecretStore(secrets_for(keys)),
    )
    report = km.health_check()
    km.close()
    assert report["healthy"] is True, report["problems"]
    assert report["mode"] == "cluster" and report["live_processes"] == 1


def test_redis_away_is_degraded_and_unhealthy() -> None:
    from _redis_server import free_port

    keys = make_keys(1)
    url = f"redis://127.0.0.1:{free_port()}/0"
    km = KeyManager(
        keys,
        settings=Settings(redis_url=url, on_store_failure="local", probe_seconds=0),
        secret_store=EnvSecretStore(secrets_for(keys)),
        probe=False,
    )
    report = km.health_check()
    km.close()
    assert report["mode"] == "degraded" and report["healthy"] is False
    assert any("does not answer" in p for p in report["problems"])
