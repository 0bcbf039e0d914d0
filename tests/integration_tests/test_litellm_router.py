"""The LiteLLM face end to end: four processes, each with its own ``Router`` and the plugin,
sharing one Redis, against the provider simulator."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from integration_tests._litellm_helpers import RouterWorkers, deployment
from rotating_llm.testing import FakeProvider

pytestmark = [pytest.mark.redis, pytest.mark.multiprocess, pytest.mark.slow]

WINDOW = 30.0  # long enough that every burst below fits in one window
RPM = 5


@pytest.fixture(scope="module")
def workers() -> Iterator[RouterWorkers]:
    pool = RouterWorkers(4)
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def fp() -> Iterator[FakeProvider]:
    with FakeProvider(rpm=RPM, window=WINDOW) as provider:
        yield provider


def _keys(n: int) -> list[str]:
    return [f"sk-fake-{i}-{uuid.uuid4().hex}" for i in range(n)]


def _job(
    redis_url: str, prefix: str, model_list: list[dict[str, Any]], **kw: Any
) -> dict[str, Any]:
    job: dict[str, Any] = {
        "kind": "run",
        "redis_url": redis_url,
        "prefix": prefix,
        "window": WINDOW,
        "max_wait": 0.0,
        "model_list": model_list,
        "mode": "async",
        "requests": 10,
        "concurrency": 4,
    }
    job.update(kw)
    return job


def _served(fp: FakeProvider) -> int:
    return sum(s.served for s in fp.stats().values())


def _rate_limited(fp: FakeProvider) -> int:
    return sum(s.rate_limited for s in fp.stats().values())


def _total(results: list[dict[str, Any]], outcome: str) -> int:
    return sum(r["outcomes"].get(outcome, 0) for r in results)


@pytest.mark.parametrize("mode", ["sync", "async", "stream"])
def test_four_routers_serve_exactly_the_pool_capacity(
    workers: RouterWorkers, fp: FakeProvider, redis_url: str, prefix: str, mode: str
) -> None:
    keys = _keys(3)
    model_list = [deployment(f"dep-{i}", k, fp.openai_url, rpm=RPM) for i, k in enumerate(keys)]
    capacity = 3 * RPM
    job = _job(redis_url, prefix, model_list, mode=mode, requests=8)  # 32 asked, 15 fit
    results = workers.run([job] * 4)

    assert _rate_limited(fp) == 0
    assert _served(fp) == capacity
    assert _total(results, "ok") == capacity
    assert _total(results, "PoolExhaustedError") == 4 * 8 - capacity
    assert len({r["pid"] for r in results}) == 4
    for key in keys:
        assert fp.key_stats(key).served == RPM
    for r in results:  # every admitted attempt was settled by the callback
        assert r["open_leases"] == 0
        assert r["settled"].get("complete", 0) == r["outcomes"].get("ok", 0)
    if mode == "stream":
        assert all(t.startswith("You said:") for r in results for t in r["texts"])


def test_limits_from_a_keys_file_matched_by_deployment_id(
    workers: RouterWorkers, fp: FakeProvider, redis_url: str, prefix: str, tmp_path: Any
) -> None:
    import json

    keys = _keys(2)
    model_list = [deployment(f"dep-{i}", k, fp.openai_url) for i, k in enumerate(keys)]
    path = tmp_path / "keys.json"
    entries = [
        {"key_id": "dep-0", "model_name": "pool", "provider": "openai", "rpm": 2, "tpm": 10_000},
        {"key_id": "dep-1", "model_name": "pool", "provider": "openai", "rpm": 3, "tpm": 10_000},
    ]
    path.write_text(json.dumps({"keys": entries}))
    job = _job(redis_url, prefix, model_list, requests=4, install_kwargs={"keys_file": str(path)})
    results = workers.run([job] * 4)

    assert _rate_limited(fp) == 0
    assert _total(results, "ok") == 5
    assert fp.key_stats(keys[0]).served == 2
    assert fp.key_stats(keys[1]).served == 3


def test_a_deployment_without_limits_is_never_refused(
    workers: RouterWorkers, redis_url: str, prefix: str
) -> None:
    with FakeProvider(window=WINDOW) as open_fp:  # the provider has no limit either
        key = _keys(1)[0]
        model_list = [deployment("free", key, open_fp.openai_url)]
        job = _job(redis_url, prefix, model_list, requests=12)
        results = workers.run([job] * 4)
        assert _total(results, "ok") == 48
        assert open_fp.key_stats(key).served == 48
    for r in results:
        assert r["open_leases"] == 0
    # each worker reads the status when it is done, others may still be acquiring; the
    # latest read comes after every acquisition, and counts only grow within the window
    assert max(r["statuses"]["free"]["rpm_usage"] for r in results) == 48  # never refused


def test_a_rate_limited_deployment_is_cooled_down_and_the_request_moves_on(
    workers: RouterWorkers, fp: FakeProvider, redis_url: str, prefix: str
) -> None:
    keys = _keys(2)
    model_list = [deployment(f"dep-{i}", k, fp.openai_url, rpm=RPM) for i, k in enumerate(keys)]
    fp.set_limits(keys[0], rpm=1)  # the provider allows less than the deployment declares
    # ... and another app has just used it: the first request the pool sends there meets a
    # 429 (answers carry x-ratelimit-* headers, so without it the pool would learn the
    # limit from its first success and never be refused)
    fp.spend(keys[0], requests=1)
    job = _job(redis_url, prefix, model_list, mode="sync", requests=RPM, retries=2)
    [result] = workers.run([job])

    assert result["outcomes"] == {"ok": RPM}  # every request moved on to dep-1
    assert fp.key_stats(keys[0]).rate_limited >= 1
    assert result["settled"].get("fail:rate_limit", 0) == fp.key_stats(keys[0]).rate_limited
    assert result["statuses"]["dep-0"]["in_cooldown"] is True
    assert result["open_leases"] == 0


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_auth_failure_disables_the_deployment(
    workers: RouterWorkers, fp: FakeProvider, redis_url: str, prefix: str, mode: str
) -> None:
    keys = _keys(3)
    model_list = [deployment(f"dep-{i}", k, fp.openai_url, rpm=RPM) for i, k in enumerate(keys)]
    fp.revoke(keys[1])
    job = _job(redis_url, prefix, model_list, mode=mode, requests=6, retries=2, concurrency=1)
    [result] = workers.run([job])

    assert result["outcomes"] == {"ok": 6}
    assert fp.key_stats(keys[1]).auth_errors == 1  # refused once, then never picked again
    assert result["settled"]["fail:auth"] == 1
    assert result["statuses"]["dep-1"]["disabled"] is True
    assert result["open_leases"] == 0


def test_model_side_failures_do_not_blame_the_key(
    workers: RouterWorkers, fp: FakeProvider, redis_url: str, prefix: str
) -> None:
    keys = _keys(1)
    model_list = [deployment("dep-0", keys[0], fp.openai_url, rpm=RPM)]
    fp.inject("overloaded", times=2)
    job = _job(redis_url, prefix, model_list, requests=3, retries=0, concurrency=1)
    [result] = workers.run([job])

    assert result["outcomes"] == {"ServiceUnavailableError": 2, "ok": 1}
    assert result["settled"] == {"fail:server": 2, "complete": 1}
    status = result["statuses"]["dep-0"]
    assert status["disabled"] is False
    assert status["in_cooldown"] is False
    assert status["rpm_usage"] == 3  # the failed attempts reached the provider: they count


def test_a_stream_cut_settles_its_lease(
    workers: RouterWorkers, fp: FakeProvider, redis_url: str, prefix: str
) -> None:
    keys = _keys(1)
    model_list = [deployment("dep-0", keys[0], fp.openai_url, rpm=RPM)]
    fp.inject("stream_cut", times=1, after_chunks=1)
    job = _job(redis_url, prefix, model_list, mode="stream", requests=2, concurrency=1)
    [result] = workers.run([job])

    assert result["outcomes"] == {"APIConnectionError": 1, "ok": 1}
    assert result["settled"] == {"fail:server": 1, "complete": 1}
    assert result["open_leases"] == 0


@pytest.mark.parametrize("mode", ["async", "stream"])
def test_the_proxy_callback_alone_serves_exactly_the_pool_capacity(
    workers: RouterWorkers, fp: FakeProvider, redis_url: str, prefix: str, mode: str
) -> None:
    """``RotatingFilter`` as the proxy loads it: LiteLLM keeps its own strategy."""
    keys = _keys(3)
    model_list = [deployment(f"dep-{i}", k, fp.openai_url, rpm=RPM) for i, k in enumerate(keys)]
    job = _job(redis_url, prefix, model_list, mode=mode, requests=8, routing="filter")
    results = workers.run([job] * 4)

    assert _rate_limited(fp) == 0
    assert _served(fp) == 3 * RPM
    assert _total(results, "ok") == 3 * RPM
    assert _total(results, "PoolExhaustedError") == 4 * 8 - 3 * RPM
    for r in results:
        assert r["open_leases"] == 0
        assert r["settled"].get("complete", 0) == r["outcomes"].get("ok", 0)
