"""No secret value in any repr, log line (every logger at DEBUG), exception or Redis value."""

from __future__ import annotations

import io
import logging

import pytest
import redis

from conftest import make_keys, secrets_for
from rotating_llm import AllKeysExhaustedError, FailureKind, KeyManager, Settings
from rotating_llm.secrets import EnvSecretStore, test_secret_access

pytestmark = pytest.mark.redis


def test_workload_leaks_no_secret(redis_url: str, prefix: str) -> None:
    keys = make_keys(3, rpm=2)
    secrets = secrets_for(keys)
    values = list(secrets.values())
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        logging.getLogger(name).setLevel(logging.DEBUG)
    texts: list[str] = []
    try:
        store = EnvSecretStore(secrets)
        settings = Settings(redis_url=redis_url, key_prefix=prefix, window_seconds=30, max_wait=0)
        km = KeyManager(keys, settings=settings, secret_store=store)
        leases = []
        for _ in range(5):
            lease = km.acquire("m", 10)
            leases.append(lease)
            texts += [repr(lease), str(lease), repr(lease.reservation)]
        leases[0].fail(FailureKind.AUTH, reason="API_KEY_INVALID")
        leases[1].fail(FailureKind.RATE_LIMIT, retry_after=3)
        leases[2].complete(5)
        leases[3].release()
        with pytest.raises(AllKeysExhaustedError) as info:  # noqa: PT012
            for _ in range(10):
                km.acquire("m", 10)
        texts += [str(info.value), repr(info.value)]
        texts += [repr(km), repr(km.limiter), repr(km.store), repr(store), repr(settings)]
        texts += [str(km.get_all_key_statuses()), str(km.health_check())]
        texts += [str(test_secret_access("k0", store)), str(test_secret_access("nope", store))]
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    texts.append(buf.getvalue())
    dump = []
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    for key in r.scan_iter(f"{prefix}*"):
        kind = r.type(key)
        dump.append(key)
        if kind == "string":
            dump.append(r.get(key) or "")
        elif kind == "hash":
            dump.append(str(r.hgetall(key)))
        elif kind == "zset":
            dump.append(str(r.zrange(key, 0, -1, withscores=True)))
    assert len(dump) > 5  # the workload really wrote state
    everything = "\n".join(texts + dump)
    assert "API_KEY_INVALID" in everything  # the reasons are there ...
    for value in values:
        assert value not in everything  # ... the secrets are not
        assert value[8:24] not in everything
