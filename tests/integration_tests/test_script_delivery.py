"""How the limiter's Lua reaches Redis: functions or scripts, reloaded after a flush, and
completions written without waiting for their replies."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
import redis
from _redis_server import RedisProcess

from conftest import make_keys, secrets_for
from rotating_llm import KeyManager, Settings
from rotating_llm.secrets import EnvSecretStore

pytestmark = pytest.mark.redis


def _nodes(km: KeyManager) -> list[redis.Redis]:
    client = km.store.primary.sync
    if km.store.primary.kind == "cluster":
        return [client.get_redis_connection(n) for n in client.get_primaries()]
    return [client]


def test_scripts_and_functions_are_loaded_again_after_a_flush(manager_factory) -> None:
    km = manager_factory(make_keys(2, rpm=50, tpm=10_000), window_seconds=30)
    km.acquire("m", 100).complete(10)
    for node in _nodes(km):
        node.script_flush()
        node.function_flush()
    lease = km.acquire("m", 300)  # the decision loads what it needs again
    lease.complete(30)  # and so does the completion written without waiting
    km.limiter.flush()
    used = {k: km.limiter.get_tpm_usage(k)["used"] for k in ("k0", "k1")}
    assert sorted(used.values()) == [10, 30]


def test_completion_is_applied_before_usage_is_read(manager_factory) -> None:
    km = manager_factory(make_keys(1, rpm=50, tpm=10_000), window_seconds=30)
    lease = km.acquire("m", 500)
    lease.complete(120)
    if km.store.primary.kind == "redis":  # written, its reply not read yet
        assert km.limiter.pending_completions == 1
    assert km.limiter.get_tpm_usage("k0")["used"] == 120
    assert km.limiter.pending_completions == 0


def test_completions_are_sent_again_after_a_lost_connection(redis_url: str, prefix: str) -> None:
    keys = make_keys(1, rpm=50, tpm=10_000)  # a Redis server: completions do not wait there
    km = KeyManager(
        keys,
        settings=Settings(redis_url=redis_url, key_prefix=prefix, window_seconds=30),
        secret_store=EnvSecretStore(secrets_for(keys)),
    )
    km.acquire("m", 400).complete(40)
    km.limiter.flush()
    km.store.primary.sync.client_kill_filter(_type="normal", skipme=True)  # every other one
    km.acquire("m", 400).complete(60)  # the decision and the completion reconnect
    assert km.limiter.get_tpm_usage("k0")["used"] == 100
    km.close()


@pytest.fixture(scope="module")
def no_functions_redis() -> Iterator[RedisProcess]:
    """A Redis whose only user may run scripts but not load or call functions."""
    server = RedisProcess()
    server.start()
    admin = redis.Redis(host="127.0.0.1", port=server.port)
    admin.acl_setuser(
        "scripts",
        enabled=True,
        passwords=["+scripts-only"],
        keys=["*"],
        commands=["+@all", "-function", "-fcall", "-fcall_ro"],
    )
    admin.config_set("requirepass", "admin-only")
    yield server
    server.stop()


def test_a_server_that_refuses_functions_gets_scripts(no_functions_redis: RedisProcess) -> None:
    keys = make_keys(2, rpm=5, tpm=10_000)
    url = f"redis://scripts:scripts-only@127.0.0.1:{no_functions_redis.port}/0"
    km = KeyManager(
        keys,
        settings=Settings(redis_url=url, max_wait=0, window_seconds=30),
        secret_store=EnvSecretStore(secrets_for(keys)),
    )
    granted = [km.acquire("m", 10) for _ in range(10)]  # exactly the capacity
    assert km.store.primary.command("acquire")[0] == "EVALSHA"
    for lease in granted:
        lease.complete(5)
    assert km.limiter.get_tpm_usage("k0")["used"] == 25
    assert not km.store.primary_down
    km.close()


def _child(url: str, prefix: str) -> None:
    keys = make_keys(2, rpm=50, tpm=10_000)
    km = KeyManager(
        keys,
        settings=Settings(redis_url=url, key_prefix=prefix, max_wait=0, window_seconds=30),
        secret_store=EnvSecretStore(secrets_for(keys)),
    )
    km.acquire("m", 200).complete(20)
    km.close()


@pytest.mark.multiprocess
def test_a_forked_child_uses_connections_of_its_own(redis_url: str, prefix: str) -> None:
    keys = make_keys(2, rpm=50, tpm=10_000)
    km = KeyManager(
        keys,
        settings=Settings(redis_url=redis_url, key_prefix=prefix, max_wait=0, window_seconds=30),
        secret_store=EnvSecretStore(secrets_for(keys)),
    )
    km.acquire("m", 100).complete(10)  # the parent's connections exist before the fork
    child = multiprocessing.get_context("fork").Process(target=_child, args=(redis_url, prefix))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    km.acquire("m", 100).complete(30)  # the parent's own connections still answer it
    used = sum(km.limiter.get_tpm_usage(k)["used"] for k in ("k0", "k1"))
    assert used == 10 + 20 + 30
    km.close()


@pytest.mark.multiprocess
def test_a_process_that_exits_without_closing_applies_its_completions(
    redis_url: str, prefix: str
) -> None:
    script = textwrap.dedent(
        f"""
        from rotating_llm import APIKey, KeyManager, Settings
        from rotating_llm.secrets import EnvSecretStore
        keys = [APIKey(key_id="k0", model_name="m", provider="x", rpm=50, tpm=10_000)]
        km = KeyManager(keys, settings=Settings(redis_url={redis_url!r}, key_prefix={prefix!r},
                        window_seconds=30), secret_store=EnvSecretStore({{"API_KEY_K0": "s"}}))
        for _ in range(5):
            km.acquire("m", 1000).complete(7)
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    keys = make_keys(1, rpm=50, tpm=10_000)
    km = KeyManager(
        keys,
        settings=Settings(redis_url=redis_url, key_prefix=prefix, window_seconds=30),
        secret_store=EnvSecretStore(secrets_for(keys)),
    )
    assert km.limiter.get_tpm_usage("k0")["used"] == 35  # not 5 x 1000
    km.close()


_KILLED_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from rotating_llm import APIKey, KeyManager, Settings
    from rotating_llm.secrets import EnvSecretStore
    keys = [APIKey(key_id="k0", model_name="m", provider="x", rpm=1000, tpm=10**6)]
    km = KeyManager(keys, settings=Settings(redis_url=sys.argv[1], key_prefix=sys.argv[2],
                    window_seconds=30), secret_store=EnvSecretStore({"API_KEY_K0": "s" * 20}))
    for _ in range(50):
        km.acquire("m", 100).complete(3)
    assert km.limiter.pending_completions > 0  # replies unread when it dies
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


@pytest.mark.multiprocess
def test_a_killed_process_loses_no_written_completion(redis_url: str, prefix: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_CHILD, redis_url, prefix], capture_output=True, timeout=60
    )
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    keys = make_keys(1, rpm=1000, tpm=10**6)
    km = KeyManager(
        keys,
        settings=Settings(redis_url=redis_url, key_prefix=prefix, window_seconds=30),
        secret_store=EnvSecretStore(secrets_for(keys)),
    )
    assert km.limiter.get_tpm_usage("k0")["used"] == 50 * 3  # every correction applied
    km.close()
