"""Shared fixtures: a real Redis (REDIS_URL), unique key prefixes, managers with test keys."""

from __future__ import annotations

import gc
import os
import sys
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from rotating_llm import APIKey, KeyManager, Settings
from rotating_llm.keys._default import _reset_default
from rotating_llm.secrets import EnvSecretStore

# Test helper modules (_windows, _servers, ...) are imported by name, here and in spawned
# worker processes (which inherit sys.path); pytest runs with --import-mode=importlib so
# that tests/unit_tests/test_standard.py and tests/integration_tests/test_standard.py coexist.
_TESTS = Path(__file__).resolve().parent
for _p in (_TESTS.parent, _TESTS, _TESTS / "integration_tests", _TESTS / "unit_tests"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

# A test that starts Python processes must be marked multiprocess (the fast subset skips them).
from _process_marks import pytest_runtest_makereport, pytest_runtest_setup  # noqa: E402, F401

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

# LiteLLM fetches a model cost map from the internet at import, retrying for seconds;
# use the copy in its wheel (spawned processes inherit this).
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def _answers(url: str) -> bool:
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError:
        return False
    return True


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of the real Redis the integration tests use.

    ``REDIS_URL`` if set (it must answer); else a server on 127.0.0.1:6379 if one answers;
    else a private ``redis-server`` started for this session. Never skips.
    """
    url = os.environ.get("REDIS_URL")
    if url:
        if not _answers(url):
            pytest.fail(f"REDIS_URL={url} does not answer")
        yield url
        return
    if _answers(DEFAULT_REDIS_URL):
        yield DEFAULT_REDIS_URL
        return
    from _redis_server import RedisProcess

    server = RedisProcess()
    server.start()
    os.environ["REDIS_URL"] = server.url  # for subprocesses started by tests
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def own_redis() -> Iterator[Any]:
    """A ``redis-server`` of the test's own (``RedisProcess``, DEBUG commands enabled),
    for tests that stall, stop or restart it; stopped after the test."""
    from _redis_server import RedisProcess

    srv = RedisProcess(args=["--enable-debug-command", "yes"])
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def cluster_url() -> Iterator[str]:
    """A real 3-master Redis Cluster: ``REDIS_CLUSTER_URL`` if set, else one started here."""
    url = os.environ.get("REDIS_CLUSTER_URL")
    if url:
        yield url
        return
    from _redis_cluster import RedisClusterProcess

    cluster = RedisClusterProcess()
    cluster.start()
    try:
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture(params=["redis", "cluster"])
def store_target(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings that point at a single Redis server, then at a Redis Cluster."""
    if request.param == "cluster":
        return {"redis_url": request.getfixturevalue("cluster_url"), "redis_cluster": True}
    return {"redis_url": request.getfixturevalue("redis_url")}


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test uses."""
    return f"t{uuid.uuid4().hex[:12]}:"


@pytest.fixture(autouse=True)
def _fresh_default_manager() -> Iterator[None]:
    _reset_default()
    yield
    _reset_default()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Freeze what collection imported (every test module and the libraries they load).

    These objects live for the whole session; frozen, the collector no longer walks them,
    so ``_collect_garbage_here`` below costs what a test allocated, not the whole heap
    (it took seconds a test on a loaded two-core machine).
    """
    del session
    gc.collect()
    gc.freeze()
    _FROZEN_AT[0] = len(sys.modules)


#: how many modules a test must load (moto, boto3, hvac: hundreds) before its survivors are
#: frozen too; a few such freezes in a run, so little that dies later stays uncollected
REFREEZE_AFTER_MODULES = 50
_FROZEN_AT = [0]


@pytest.fixture(autouse=True)
def _collect_garbage_here() -> Iterator[None]:
    """Collect each test's garbage at its end, not in whichever test runs the collector next.

    Provider SDK clients (httpx, openai, google-genai, LiteLLM's caches) that a test drops
    unclosed hold sockets; the garbage collector reaches them at a moment of its own, and
    ``filterwarnings = error`` then fails an unrelated later test on the ResourceWarning.
    Seen twice in full runs (a LangChain test failing on a socket of an earlier test).
    """
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    if len(sys.modules) >= _FROZEN_AT[0] + REFREEZE_AFTER_MODULES:  # a library loaded lazily
        gc.freeze()
        _FROZEN_AT[0] = len(sys.modules)


def make_keys(
    n: int, model: str = "m", rpm: int = 5, tpm: int = 100_000, rpd: int | None = None, **kw: Any
) -> list[APIKey]:
    """``n`` keys ``k0..k{n-1}`` of one pool."""
    return [
        APIKey(key_id=f"k{i}", model_name=model, provider="gemini", rpm=rpm, tpm=tpm, rpd=rpd, **kw)
        for i in range(n)
    ]


def secrets_for(keys: list[APIKey]) -> dict[str, str]:
    """Test secrets (recognisable, never printed) for ``keys``, as environment variables."""
    return {f"API_KEY_{k.key_id.upper()}": f"sk-test-{k.key_id}-{uuid.uuid4().hex}" for k in keys}


@pytest.fixture
def manager_factory(
    store_target: dict[str, Any], prefix: str
) -> Iterator[Callable[..., KeyManager]]:
    """Build ``KeyManager``s on the real Redis with a unique prefix; closed after the test."""
    made: list[KeyManager] = []

    def build(
        keys: list[APIKey], *, secrets: dict[str, str] | None = None, **settings: Any
    ) -> KeyManager:
        opts: dict[str, Any] = {**store_target, "key_prefix": prefix, "max_wait": 0}
        opts.update(settings)
        store = EnvSecretStore(environ=secrets if secrets is not None else secrets_for(keys))
        km = KeyManager(keys, settings=Settings(**opts), secret_store=store)
        made.append(km)
        return km

    yield build
    for km in made:
        km.close()


@pytest.fixture(params=["redis", "cluster", "embedded"])
def make(request: pytest.FixtureRequest, prefix: str) -> Iterator[Callable[..., KeyManager]]:
    """``make(keys, quota_groups=..., **settings)``: a manager on a Redis server, a Redis
    Cluster, then the embedded store (window 60 s, no waiting); closed after the test."""
    if request.param == "cluster":
        target: dict[str, Any] = {
            "redis_url": request.getfixturevalue("cluster_url"),
            "redis_cluster": True,
        }
    elif request.param == "redis":
        target = {"redis_url": request.getfixturevalue("redis_url")}
    else:
        target = {"redis_url": None}
    made: list[KeyManager] = []

    def build(keys: list[Any], quota_groups: Any = None, **settings: Any) -> KeyManager:
        opts = {**target, "key_prefix": prefix, "max_wait": 0, "window_seconds": 60, **settings}
        km = KeyManager(
            keys,
            quota_groups=quota_groups,
            settings=Settings(**opts),
            secret_store=EnvSecretStore(environ=secrets_for(keys)),
        )
        made.append(km)
        return km

    yield build
    for km in made:
        km.close()
