"""The real LiteLLM proxy (``litellm --config``), two instances on one Redis, driven by the
openai SDK from several processes, with the config and callback module of docs/litellm.md."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


@pytest.fixture(scope="module")
def proxies(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[FakeProvider, list[str], list[Path]]]:
    if shutil.which("litellm") is None:
        pytest.skip("litellm's command is not installed")
    work = tmp_path_factory.mktemp("proxy")
    (work / "rotating_llm_proxy.py").write_text(_doc_block("python", "# rotating_llm_proxy.py"))
    config = _doc_block("yaml", "# config.yaml").replace("rpm: 500", f"rpm: {RPM}")
    config = config.replace("\nlitellm_settings:", "\n" + TENANT_MODELS + "litellm_settings:")
    (work / "config.yaml").write_text(config)
    fp = FakeProvider(rpm=RPM).start()
    fp2 = FakeProvider(rpm=100).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("API_KEY_", "OPENAI"))}
    env.update(
        REDIS_URL=redis_url,
        ROTATING_LLM_KEY_PREFIX=f"proxy-{os.getpid()}-{time.time_ns()}:",
        ROTATING_LLM_MAX_WAIT="0",
        LITELLM_MASTER_KEY=MASTER,
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        OPENAI_API_BASE=fp.openai_url,
        OPENAI_KEY_1="sim-proxy-key-one",
        OPENAI_KEY_2="sim-proxy-key-two",
        OPENAI_API_BASE_2=fp2.openai_url,
        OPENAI_KEY_3="sim-proxy-key-three",
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
        yield fp, [f"http://127.0.0.1:{p}" for p in ports], logs, fp2
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


def test_two_proxies_serve_exact_capacity_without_provider_429s(
    proxies: tuple[FakeProvider, list[str], list[Path], FakeProvider],
) -> None:
    fp, urls, logs, _ = proxies
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
    proxies: tuple[FakeProvider, list[str], list[Path], FakeProvider],
) -> None:
    import openai

    _, urls, _, fp2 = proxies
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
