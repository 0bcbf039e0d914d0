"""The key prober: disabled keys the provider accepts again come back, one elected holder."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from rotating_llm import KeyManager, Settings
from rotating_llm.keys import APIKey
from rotating_llm.keys._prober import probe_key, probe_results
from rotating_llm.secrets import EnvSecretStore
from rotating_llm.testing import FakeProvider

pytestmark = pytest.mark.redis

INTERVAL = 1.0


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    with FakeProvider() as fp:
        yield fp


def _keys(fp: FakeProvider) -> list[APIKey]:
    return [
        APIKey(key_id="g0", model_name="m", provider="gemini", rpm=5, tpm=1000, base_url=fp.url),
        APIKey(key_id="g1", model_name="m", provider="gemini", rpm=5, tpm=1000, base_url=fp.url),
        APIKey(
            key_id="o0", model_name="o", provider="openai", rpm=5, tpm=1000, base_url=fp.openai_url
        ),
    ]


SECRETS = {"API_KEY_G0": "sim-g0-secret", "API_KEY_G1": "sim-g1-secret", "API_KEY_O0": "sim-o0"}


def _manager(redis_url: str, prefix: str, fp: FakeProvider, **kw: float) -> KeyManager:
    settings = Settings(redis_url=redis_url, key_prefix=prefix, max_wait=0, **kw)
    return KeyManager(_keys(fp), settings=settings, secret_store=EnvSecretStore(environ=SECRETS))


def test_probe_key_verdicts(provider: FakeProvider) -> None:
    g0, _, o0 = _keys(provider)
    assert probe_key(g0, "sim-g0-secret").accepted is True
    assert probe_key(o0, "sim-o0").accepted is True
    provider.revoke("sim-g0-secret")
    provider.revoke("sim-o0")
    bad = probe_key(g0, "sim-g0-secret")
    assert bad.accepted is False and bad.status == 400
    assert "sim-g0-secret" not in repr(bad)
    assert probe_key(o0, "sim-o0").status == 401
    dead = APIKey(
        key_id="x",
        model_name="m",
        provider="openai",
        rpm=1,
        tpm=1,
        base_url="http://127.0.0.1:9/v1",
    )
    assert probe_key(dead, "s", timeout=2).accepted is None
    # a probe is not a generation request: it takes nothing from the quota
    assert provider.key_stats("sim-g0-secret").requests == 0
    assert provider.key_stats("sim-g0-secret").metadata == 2


@pytest.mark.slow
def test_revoked_then_restored_key_is_back_within_two_intervals(
    redis_url: str, prefix: str, provider: FakeProvider
) -> None:
    km = _manager(redis_url, prefix, provider, probe_seconds=INTERVAL)
    try:
        provider.revoke("sim-g0-secret")
        km.disable_key("g0", "provider rejected the key")
        km.disable_key("g1", "operator")  # the provider still accepts g1
        started = time.monotonic()
        time.sleep(3 * INTERVAL)
        statuses = {s["key_id"]: s for s in km.get_all_key_statuses()}
        assert statuses["g0"]["disabled"]  # still rejected: stays out
        assert not statuses["g1"]["disabled"]  # accepted: healed
        results = probe_results(km)
        assert results["g1"]["action"] == "re-enabled" and results["g1"]["was"] == "operator"
        assert results["g0"]["verdict"].startswith("rejected")
        provider.restore("sim-g0-secret")
        restored = time.monotonic()
        while km.get_key_status("g0")["disabled"]:
            assert time.monotonic() - restored < 2 * INTERVAL + 0.5, "not back in two intervals"
            time.sleep(0.05)
        # one call per key per interval at most (plus the first one)
        elapsed = time.monotonic() - started
        assert provider.key_stats("sim-g0-secret").metadata <= elapsed / INTERVAL + 1
        assert provider.key_stats("sim-g0-secret").requests == 0
    finally:
        km.close()


def test_cooling_key_the_provider_rejects_is_disabled(
    redis_url: str, prefix: str, provider: FakeProvider
) -> None:
    km = _manager(redis_url, prefix, provider, probe_seconds=0.5)
    try:
        provider.revoke("sim-o0")
        km.mark_key_unhealthy("o0", 30, "server errors")
        deadline = time.monotonic() + 3
        while not km.get_key_status("o0")["disabled"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert "rejected" in km.get_key_status("o0")["disabled_reason"]
    finally:
        km.close()


def test_no_prober_when_off_or_embedded(
    redis_url: str, prefix: str, provider: FakeProvider
) -> None:
    km = _manager(redis_url, prefix, provider, probe_seconds=0)
    assert km._prober is None
    km.close()
    emb = KeyManager(
        _keys(provider),
        settings=Settings(redis_url=None),
        secret_store=EnvSecretStore(environ=SECRETS),
    )
    assert emb._prober is None
    emb.close()


@pytest.mark.multiprocess
def test_one_holder_across_processes_and_takeover(
    redis_url: str, prefix: str, provider: FakeProvider
) -> None:
    r = redis.Redis.from_url(redis_url)
    worker = str(Path(__file__).with_name("_prober_worker.py"))
    procs = [
        subprocess.Popen(
            [sys.executable, worker, redis_url, prefix, provider.url],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    try:
        tokens = [p.stdout.readline().strip().removeprefix("token=") for p in procs]  # type: ignore[union-attr]
        lock = f"{prefix}prober:lock"
        deadline = time.monotonic() + 10
        while r.get(lock) is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        holder = r.get(lock).decode()  # type: ignore[union-attr]
        assert holder in tokens
        for _ in range(5):  # one holder, and it keeps the lock while alive
            time.sleep(0.3)
            assert r.get(lock).decode() == holder  # type: ignore[union-attr]
        procs[tokens.index(holder)].kill()  # no release: the lock must expire and move
        deadline = time.monotonic() + 15
        while (now := r.get(lock)) is None or now.decode() == holder:
            assert time.monotonic() < deadline, "nobody took the lock over"
            time.sleep(0.1)
        assert now.decode() in tokens and now.decode() != holder
    finally:
        for p in procs:
            p.kill()
            p.wait()
            p.stdout.close()  # type: ignore[union-attr]
        r.close()


def test_closing_the_holder_releases_the_lock(
    redis_url: str, prefix: str, provider: FakeProvider
) -> None:
    km = _manager(redis_url, prefix, provider, probe_seconds=0.5)
    r = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + 5
    while r.get(f"{prefix}prober:lock") is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    km.close()
    assert r.get(f"{prefix}prober:lock") is None
    r.close()
