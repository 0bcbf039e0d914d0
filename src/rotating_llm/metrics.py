"""Prometheus metrics of the pools, fed by :mod:`rotating_llm.events` (extra ``metrics``).

Metrics (labels):

- ``rotating_llm_leases_total`` (model, key_id): leases granted (requests sent to a key)
- ``rotating_llm_requests_total`` (model, key_id, outcome): settled leases; outcome
  ``served`` (completed), ``released`` (never reached the provider), ``rate_limit``,
  ``daily_quota``, ``auth``, ``server``, ``timeout``, ``invalid_request`` (provider
  failures; ``rate_limit`` and ``daily_quota`` are the provider's 429s)
- ``rotating_llm_refused_total`` (model, reason): requests refused before the provider
  (``exhausted``: no capacity in time; ``too_large``)
- ``rotating_llm_waits_total`` (model) and ``rotating_llm_wait_seconds`` (model, histogram):
  waits for capacity, and the time leases waited before they were granted
- ``rotating_llm_cooldowns_total`` (model, key_id), ``rotating_llm_cooldown_seconds``
  (model, histogram), ``rotating_llm_disabled_total`` (model, key_id)
- ``rotating_llm_tokens_total`` (model, key_id): tokens of served requests (as settled)
- ``rotating_llm_estimated_tokens`` (model, histogram): tokens reserved per lease
- ``rotating_llm_tier_leases_total`` (model, tier): leases granted on keys of each tier
- ``rotating_llm_affinity_total`` (model, outcome): leases asked with an affinity;
  outcome ``held`` (the key that last served it) or ``moved``
- ``rotating_llm_group_leases_total``, ``rotating_llm_group_tokens_total`` and
  ``rotating_llm_group_cooldowns_total`` (model, quota_group): the same for the keys of
  each quota group together (a group cooldown cools all its keys at once)

Usage::

    from rotating_llm.metrics import enable_metrics, start_metrics_server
    enable_metrics()               # the default registry; or enable_metrics(my_registry)
    start_metrics_server(9108)     # http://127.0.0.1:9108/metrics
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, start_http_server

from rotating_llm.events import add_listener, remove_listener

__all__ = [
    "PoolMetrics",
    "disable_metrics",
    "enable_metrics",
    "get_metrics",
    "start_metrics_server",
]

_WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_COOLDOWN_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0, 86400.0)
_TOKEN_BUCKETS = (16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576)


@dataclass
class PoolMetrics:
    """The metric objects of one registry, and the event listener that feeds them."""

    registry: CollectorRegistry
    leases: Counter
    requests: Counter
    refused: Counter
    waits: Counter
    wait_seconds: Histogram
    cooldowns: Counter
    cooldown_seconds: Histogram
    disabled: Counter
    tokens: Counter
    estimated_tokens: Histogram
    group_leases: Counter
    group_tokens: Counter
    group_cooldowns: Counter
    tier_leases: Counter
    affinity: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> PoolMetrics:
        """Register every metric on ``registry``."""
        ns = "rotating_llm"
        mk = ["model", "key_id"]
        gk = ["model", "quota_group"]
        common: dict[str, Any] = {"namespace": ns, "registry": registry}
        return cls(
            registry=registry,
            leases=Counter("leases", "Leases granted", mk, namespace=ns, registry=registry),
            requests=Counter(
                "requests",
                "Settled leases by outcome (served, released, provider failures)",
                [*mk, "outcome"],
                namespace=ns,
                registry=registry,
            ),
            refused=Counter(
                "refused",
                "Requests refused before the provider",
                ["model", "reason"],
                namespace=ns,
                registry=registry,
            ),
            waits=Counter(
                "waits", "Waits for capacity", ["model"], namespace=ns, registry=registry
            ),
            wait_seconds=Histogram(
                "wait_seconds",
                "Seconds a lease waited for capacity before it was granted",
                ["model"],
                namespace=ns,
                registry=registry,
                buckets=_WAIT_BUCKETS,
            ),
            cooldowns=Counter(
                "cooldowns", "Keys put in cooldown", mk, namespace=ns, registry=registry
            ),
            cooldown_seconds=Histogram(
                "cooldown_seconds",
                "Length of the cooldowns",
                ["model"],
                namespace=ns,
                registry=registry,
                buckets=_COOLDOWN_BUCKETS,
            ),
            disabled=Counter("disabled", "Keys disabled", mk, namespace=ns, registry=registry),
            tokens=Counter("tokens", "Tokens charged to keys", mk, namespace=ns, registry=registry),
            estimated_tokens=Histogram(
                "estimated_tokens",
                "Tokens reserved per lease",
                ["model"],
                namespace=ns,
                registry=registry,
                buckets=_TOKEN_BUCKETS,
            ),
            group_leases=Counter(
                "group_leases", "Leases granted on a quota group's keys", gk, **common
            ),
            group_tokens=Counter(
                "group_tokens", "Tokens charged to a quota group's keys", gk, **common
            ),
            group_cooldowns=Counter(
                "group_cooldowns", "Cooldowns of a whole quota group", gk, **common
            ),
            tier_leases=Counter(
                "tier_leases", "Leases granted on keys of a tier", ["model", "tier"], **common
            ),
            affinity=Counter(
                "affinity", "Leases asked with an affinity", ["model", "outcome"], **common
            ),
        )

    def __call__(self, name: str, fields: dict[str, Any]) -> None:
        """The event listener (see :mod:`rotating_llm.events` for the fields)."""
        model = str(fields.get("model", ""))
        key_id = str(fields.get("key_id", ""))
        group = fields.get("quota_group")
        if name == "lease.acquired":
            self.leases.labels(model, key_id).inc()
            self.tier_leases.labels(model, str(fields.get("tier", 0))).inc()
            held = fields.get("affinity_held")
            if held is not None:
                self.affinity.labels(model, "held" if held else "moved").inc()
            if group:
                self.group_leases.labels(model, str(group)).inc()
            self.wait_seconds.labels(model).observe(float(fields.get("waited") or 0.0))
            self.estimated_tokens.labels(model).observe(float(fields.get("estimated_tokens") or 0))
        elif name == "lease.settled":
            outcome = str(fields.get("outcome", ""))
            label = {"complete": "served", "release": "released"}.get(outcome)
            if label is None:
                label = outcome.split(":", 1)[-1] if outcome.startswith("fail:") else outcome
            self.requests.labels(model, key_id, label).inc()
            tokens = fields.get("tokens")
            if label == "served" and isinstance(tokens, (int, float)) and tokens > 0:
                self.tokens.labels(model, key_id).inc(tokens)
                if group:
                    self.group_tokens.labels(model, str(group)).inc(tokens)
        elif name == "lease.waiting":
            self.waits.labels(model).inc()
        elif name == "lease.refused":
            self.refused.labels(model, str(fields.get("reason", ""))).inc()
        elif name == "key.cooldown":
            self.cooldowns.labels(model, key_id).inc()
            seconds = fields.get("seconds")
            if isinstance(seconds, (int, float)):
                self.cooldown_seconds.labels(model).observe(float(seconds))
        elif name == "key.disabled":
            self.disabled.labels(model, key_id).inc()
        elif name == "group.cooldown":
            self.group_cooldowns.labels(model, str(group or "")).inc()


_lock = threading.Lock()
_enabled: dict[int, PoolMetrics] = {}


def enable_metrics(registry: CollectorRegistry | None = None) -> PoolMetrics:
    """Count pool events in ``registry`` (default: prometheus_client's ``REGISTRY``).

    Idempotent per registry; returns the metrics (``.registry`` for your own exporter).
    """
    reg = REGISTRY if registry is None else registry
    with _lock:
        found = _enabled.get(id(reg))
        if found is None:
            found = _enabled[id(reg)] = PoolMetrics.create(reg)
            add_listener(found)
        return found


def get_metrics(registry: CollectorRegistry | None = None) -> PoolMetrics | None:
    """The metrics enabled on ``registry`` (default ``REGISTRY``), or ``None``."""
    reg = REGISTRY if registry is None else registry
    return _enabled.get(id(reg))


def disable_metrics(registry: CollectorRegistry | None = None) -> None:
    """Stop counting into ``registry`` and unregister its metrics."""
    reg = REGISTRY if registry is None else registry
    with _lock:
        found = _enabled.pop(id(reg), None)
    if found is None:
        return
    remove_listener(found)
    for metric in (
        found.leases,
        found.requests,
        found.refused,
        found.waits,
        found.wait_seconds,
        found.cooldowns,
        found.cooldown_seconds,
        found.disabled,
        found.tokens,
        found.estimated_tokens,
        found.group_leases,
        found.group_tokens,
        found.group_cooldowns,
    ):
        reg.unregister(metric)


def start_metrics_server(
    port: int, addr: str = "127.0.0.1", registry: CollectorRegistry | None = None
) -> tuple[Any, threading.Thread]:
    """Serve ``/metrics`` on ``addr:port`` (metrics enabled first); return the server and
    its thread (``server.shutdown()`` stops it). Loopback by default."""
    metrics = enable_metrics(registry)
    server, thread = start_http_server(port, addr=addr, registry=metrics.registry)
    return server, thread
