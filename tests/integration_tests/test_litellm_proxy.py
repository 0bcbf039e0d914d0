"""The real LiteLLM proxy (``litellm --config``), two instances on one Redis, driven by the
openai SDK from several processes, with the config and callback module of docs/litellm.md."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from rotating_llm.testing import FakeProvider

from ._servers import free_port

pytest.importorskip("fastapi", reason="the proxy extra is not installed")

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.multiprocess]

DOC = Path(__file__).parents[2] / "docs" / "litellm.md"
RPM = 3  # per key; two keys: a capacity of 6 per window
MASTER = "sk-master-for-tests"
TENANT_RPM = 2  # every tenant's cap (ROTATING_LLM_TENANT_RPM) in the proxies
#: A second model group, on a simulator of its own, for the tenant test.
TENANT_MODELS = """  - model_name: tenant-pool
    litellm_params:
      model: openai/gpt-4o
      api_base: os.environ/OPENAI_API_BASE_2
      api_key: os.environ/OPENAI_KEY_3
      rpm: 20
    model_info: {id: tenant-key-1}

"""
#: A third group for the priority test, served by a filter of its own (a short window,
#: picks that wait): one deployment of PRIO_RPM per PRIO_WINDOW seconds.
PRIO_RPM, PRIO_WINDOW, PRIO_MAX_WAIT = 2, 4.0, 10.0
PRIO_MODELS = """  - model_name: prio-pool
    litellm_params:
      model: openai/gpt-4o
      api_base: os.environ/OPENAI_API_BASE_3
      api_key: os.environ/OPENAI_KEY_4
      rpm: 2
    model_info: {id: prio-key-1}

"""
#: The doc's filter keeps its groups; the priority group's filter is added beside it.
PRIO_FILTER = f"""
rotating = RotatingFilter(redis_url=os.environ["REDIS_URL"], model_groups=["gpt-4o", "tenant-pool"])
queued = RotatingFilter(
    redis_url=os.environ["REDIS_URL"], window_seconds={PRIO_WINDOW}, max_wait={PRIO_MAX_WAIT},
    model_groups=["prio-pool"],
)
"""


def _doc_block(lang: str, first_line: str) -> str:
    for block in re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), re.S):
        if block.startswith(first_line):
            return str(block)
    raise AssertionError(f"docs/litellm.md has no {lang} block starting {first_line!r}")


def _ready(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"proxy exited: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/liveliness", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"proxy not ready: {log.read_text()[-3000:]}")


class Proxies(NamedTuple):
    """The fixture's proxies, their simulators (one per model group) and key prefix."""

    fp: FakeProvider
    urls: list[str]
    logs: list[Path]
    fp2: FakeProvider
    fp3: FakeProvider
    prefix: str


@pytest.fixture(scope="module")
def proxies(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxies]:
    if shutil.which("litellm") is None:
        pytest.skip("litellm's command is not installed")
    work = tmp_path_factory.mktemp("proxy")
    module = _doc_block("python", "# rotating_llm_proxy.py")
    (work / "rotating_llm_proxy.py").write_text(module + PRIO_FILTER)
    config = _doc_block("yaml", "# config.yaml").replace("rpm: 500", f"rpm: {RPM}")
    models = TENANT_MODELS + PRIO_MODELS
    config = config.replace("\nlitellm_settings:", "\n" + models + "litellm_settings:")
    callbacks = '["rotating_llm_proxy.rotating"]'
    assert callbacks in config
    config = config.replace(
        callbacks, '["rotating_llm_proxy.rotating", "rotating_llm_proxy.queued"]'
    )
    (work / "config.yaml").write_text(config)
    fp = FakeProvider(rpm=RPM).start()
    fp2 = FakeProvider(rpm=100).start()
    fp3 = FakeProvider(rpm=PRIO_RPM, window=PRIO_WINDOW).start()
    prefix = f"proxy-{os.getpid()}-{time.time_ns()}:"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("API_KEY_", "OPENAI"))}
    env.update(
        REDIS_URL=redis_url,
        ROTATING_LLM_KEY_PREFIX=prefix,
        ROTATING_LLM_MAX_WAIT="0",
        LITELLM_MASTER_KEY=MASTER,
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        OPENAI_API_BASE=fp.openai_url,
        OPENAI_KEY_1="sim-proxy-key-one",
        OPENAI_KEY_2="sim-proxy-key-two",
        OPENAI_API_BASE_2=fp2.openai_url,
        OPENAI_KEY_3="sim-proxy-key-three",
        OPENAI_API_BASE_3=fp3.openai_url,
        OPENAI_KEY_4="sim-proxy-key-four",
        ROTATING_LLM_TENANT_RPM=str(TENANT_RPM),
        PYTHONPATH=os.pathsep.join(
            p for p in (str(Path(__file__).parents[2] / "src"), env.get("PYTHONPATH", "")) if p
        ),
    )
    procs, ports, logs, handles = [], [], [], []
    for i in range(2):
        port = free_port()
        log = work / f"proxy{i}.log"
        handles.append(log.open("wb"))
        procs.append(
            subprocess.Popen(
                ["litellm", "--config", "config.yaml", "--port", str(port)],
                cwd=work,
                env=env,
                stdout=handles[-1],
                stderr=subprocess.STDOUT,
            )
        )
        ports.append(port)
        logs.append(log)
    try:
        for proc, port, log in zip(procs, ports, logs, strict=True):
            _ready(port, proc, log)
        yield Proxies(fp, [f"http://127.0.0.1:{p}" for p in ports], logs, fp2, fp3, prefix)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for handle in handles:
            handle.close()
        fp.stop()
        fp2.stop()
        fp3.stop()


def test_two_proxies_serve_exact_capacity_without_provider_429s(proxies: Proxies) -> None:
    fp, urls, logs = proxies.fp, proxies.urls, proxies.logs
    client = str(Path(__file__).with_name("_proxy_client.py"))
    workers = [
        subprocess.Popen(
            [sys.executable, client, MASTER, "4", *urls[i % 2 :], *urls[: i % 2]],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    results = []
    for w in workers:
        out, _ = w.communicate(timeout=120)
        assert w.returncode == 0
        results += json.loads(out)
    served = [r for r in results if r["status"] == 200]
    refused = [r for r in results if r["status"] != 200]
    assert len(served) == 2 * RPM  # exactly the pool's capacity, over both proxies
    assert len(refused) == len(results) - 2 * RPM
    assert all(r["status"] == 429 for r in refused)
    assert all(r["retry_after"] and 1 <= int(r["retry_after"]) <= 61 for r in refused)
    stats = fp.stats()
    assert sum(s.rate_limited for s in stats.values()) == 0  # never a provider 429
    assert sum(s.served for s in stats.values()) == 2 * RPM
    for log in logs:
        text = log.read_text(errors="replace")
        assert "/chat/completions HTTP/1.1" in text or "chat/completions" in text
        assert "--- Logging error ---" not in text, "the host's access log broke"
        assert "sim-proxy-key" not in text


def test_the_proxy_caps_each_tenant_by_user_or_metadata_across_instances(
    proxies: Proxies,
) -> None:
    import openai

    urls, fp2 = proxies.urls, proxies.fp2
    clients = [openai.OpenAI(base_url=u, api_key=MASTER, max_retries=0) for u in urls]

    def send(i: int, **kw: Any) -> int:
        # num_retries 0: the proxy's own retries would wait out the refusal's Retry-After
        body = {"num_retries": 0, **kw.pop("extra_body", {})}
        try:
            clients[i % 2].chat.completions.create(
                model="tenant-pool",
                messages=[{"role": "user", "content": f"t{i}"}],
                extra_body=body,
                **kw,
            )
            return 200
        except openai.APIStatusError as exc:
            return exc.status_code

    try:
        alice = [send(i, user="alice@example.com") for i in range(4)]
        carol = [send(i, extra_body={"metadata": {"tenant": "carol"}}) for i in range(4)]
        anonymous = [send(i) for i in range(4)]
    finally:
        for c in clients:
            c.close()
    assert alice == [200] * TENANT_RPM + [429] * (4 - TENANT_RPM)  # over both instances
    assert carol == [200] * TENANT_RPM + [429] * (4 - TENANT_RPM)
    assert anonymous == [200] * 4  # no tenant: no cap
    assert sum(s.served for s in fp2.stats().values()) == 2 * TENANT_RPM + 4
    assert sum(s.rate_limited for s in fp2.stats().values()) == 0


def _queued(redis_url: str, prefix: str, n: int) -> None:
    """Until ``n`` tickets wait in the priority group's queue (both proxies' picks)."""
    import redis

    r = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + 30
    while r.hlen(f"{prefix}v3:{{prio-pool}}:qt") < n:
        assert time.monotonic() < deadline, f"never {n} waiting picks"
        time.sleep(0.005)
    r.close()


def test_higher_priority_sent_later_through_the_proxy_is_served_first(
    proxies: Proxies, redis_url: str, tmp_path: Path
) -> None:
    """The pool is full; 4 picks of priority 0 (one client process, one proxy) wait in
    its queue, then 2 of priority 9 (another process, the other proxy): capacity that
    returns goes to the 2 first, then to the 4 as it returns; those it does not reach
    before their max_wait (how many depends on when the fills' slots return on a loaded
    machine: 2 or 3) give up with a 429 that says their place in the queue and a
    Retry-After no sooner than the expected wait."""
    import openai

    client = str(Path(__file__).with_name("_proxy_prio_client.py"))
    ready = [tmp_path / "ready-low", tmp_path / "ready-high"]
    go = [tmp_path / "go-low", tmp_path / "go-high"]
    jobs = [("0", "4", proxies.urls[0]), ("9", "2", proxies.urls[1])]
    workers = [
        subprocess.Popen(
            [sys.executable, client, MASTER, url, prio, n, str(ready[i]), str(go[i])],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i, (prio, n, url) in enumerate(jobs)
    ]
    try:
        deadline = time.monotonic() + 120
        while not all(p.exists() for p in ready):
            assert time.monotonic() < deadline and all(w.poll() is None for w in workers)
            time.sleep(0.02)
        with openai.OpenAI(base_url=proxies.urls[0], api_key=MASTER, max_retries=0) as c:
            for i in range(PRIO_RPM):  # the pool is full for a window from now
                c.chat.completions.create(
                    model="prio-pool", messages=[{"role": "user", "content": f"fill {i}"}]
                )
        full = time.time()
        go[0].touch()
        _queued(redis_url, proxies.prefix, 4)
        go[1].touch()
        _queued(redis_url, proxies.prefix, 6)
        queued = time.time()
        results = []
        for w in workers:
            out, _ = w.communicate(timeout=120)
            assert w.returncode == 0
            results.append(json.loads(out))
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    # (the premise: every pick was queued before capacity returned, a window after `full`)
    assert queued - full < PRIO_WINDOW, "the machine took a window to queue 6 picks"
    low, high = results
    print("low:", low, "high:", high)
    assert [r["status"] for r in high] == [200, 200]
    statuses = sorted(r["status"] for r in low)
    assert set(statuses) <= {200, 429} and 1 <= statuses.count(429) <= 3, statuses
    served_low = [r["ended"] for r in low if r["status"] == 200]
    assert max(r["ended"] for r in high) < min(served_low)  # the later, higher ones first
    for r in (r for r in low if r["status"] == 429):
        assert "ahead in the queue" in r["message"] and "expected wait" in r["message"]
        assert r["position"] is not None and int(r["position"]) >= 0
        wait = float(r["expected_wait"])
        assert 0 < wait <= PRIO_WINDOW + 1
        assert int(r["retry_after"]) == max(1, math.ceil(wait))  # no sooner than the wait
    stats = proxies.fp3.stats()
    assert sum(s.served for s in stats.values()) == PRIO_RPM + 2 + len(served_low)
    assert sum(s.rate_limited for s in stats.values()) == 0
