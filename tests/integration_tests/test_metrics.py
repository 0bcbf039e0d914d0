"""Prometheus metrics after a router workload, read from a private registry."""

from __future__ import annotations

import urllib.request

import pytest
from _lc_fixtures import pool
from prometheus_client import CollectorRegistry

from rotating_llm.metrics import disable_metrics, enable_metrics, get_metrics, start_metrics_server
from rotating_llm.router import RequestRouter

pytestmark = pytest.mark.redis
FLASH = "gemini-2.5-flash"


def value(reg: CollectorRegistry, name: str, **labels: str) -> float:
    found = reg.get_sample_value(name, labels)
    return 0.0 if found is None else found


def test_counters_after_a_workload(redis_url: str, prefix: str) -> None:
    reg = CollectorRegistry()
    metrics = enable_metrics(reg)
    assert enable_metrics(reg) is metrics and get_metrics(reg) is metrics
    try:
        with pool(2, key_rpm=2, redis_url=redis_url, key_prefix=prefix, router_enabled=True) as p:
            router = RequestRouter(p.manager, max_wait=0)
            p.provider.revoke(p.secret("k1"))
            results = [router.send_one_shot(f"q{i}", FLASH) for i in range(4)]
        served = [r for r in results if r["success"]]
        refused = [r for r in results if r.get("error_type") == "rate_limited"]
        assert len(served) == 2 and len(refused) == 2  # k1 revoked, k0 has rpm 2
        k0 = {"model": FLASH, "key_id": "k0"}
        k1 = {"model": FLASH, "key_id": "k1"}
        assert value(reg, "rotating_llm_requests_total", **k0, outcome="served") == 2
        assert value(reg, "rotating_llm_requests_total", **k1, outcome="auth") == 1
        assert value(reg, "rotating_llm_disabled_total", **k1) == 1
        assert value(reg, "rotating_llm_leases_total", **k0) == 2
        assert value(reg, "rotating_llm_refused_total", model=FLASH, reason="exhausted") == 2
        tokens = value(reg, "rotating_llm_tokens_total", **k0)
        assert tokens == sum(int(r["tokens"]["total"]) for r in served)
        assert value(reg, "rotating_llm_estimated_tokens_count", model=FLASH) == 3
        assert value(reg, "rotating_llm_tier_leases_total", model=FLASH, tier="0") == 3
    finally:
        disable_metrics(reg)
    assert get_metrics(reg) is None
    assert reg.get_sample_value("rotating_llm_leases_total", k0) is None  # unregistered


def test_cooldowns_waits_and_the_http_endpoint(redis_url: str, prefix: str) -> None:
    reg = CollectorRegistry()
    server, thread = start_metrics_server(0, registry=reg)
    try:
        with pool(1, key_rpm=1, redis_url=redis_url, key_prefix=prefix, window_seconds=1.0) as p:
            router = RequestRouter(p.manager, max_wait=5, rotation=True)
            assert router.send_one_shot("a", FLASH)["success"]
            assert router.send_one_shot("b", FLASH)["success"]  # waited for the window
            p.provider.set_limits(p.secret("k0"), rpm=1)  # the provider now says 429
            limited = router.send_one_shot("c", FLASH)
            port = server.server_address[1]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
                body = resp.read().decode()
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()
        disable_metrics(reg)
    assert limited["error_type"] == "rate_limited"
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line.startswith("rotating_llm_")
    }
    labels = 'key_id="k0",model="gemini-2.5-flash"'
    assert samples['rotating_llm_waits_total{model="gemini-2.5-flash"}'] >= 1
    assert samples[f'rotating_llm_requests_total{{{labels},outcome="served"}}'] == 2
    assert samples[f'rotating_llm_requests_total{{{labels},outcome="rate_limit"}}'] == 1
    assert samples[f"rotating_llm_cooldowns_total{{{labels}}}"] == 1
    assert samples['rotating_llm_cooldown_seconds_count{model="gemini-2.5-flash"}'] == 1
