"""FakeProvider as a server: HTTP stats and control, process mode, the CLI, concurrency."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from rotating_llm.testing import FakeProvider, KeyStats
from rotating_llm.testing.cli import configure_parser, run

KEY = "AIza-server-test-key-000000001"
Factory = Callable[..., FakeProvider]


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def post(url: str) -> Any:
    req = urllib.request.Request(url, data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def gemini(fp: FakeProvider, key: str = KEY) -> genai.Client:
    return genai.Client(api_key=key, http_options=types.HttpOptions(base_url=fp.url))


def test_stats_over_http_are_keyed_by_fingerprint_and_resettable(
    fake_provider_factory: Factory,
) -> None:
    fp = fake_provider_factory(rpm=1)
    client = gemini(fp)
    client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    with pytest.raises(genai_errors.ClientError):
        client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    raw = json.dumps(get_json(f"{fp.url}/_fake/stats"))
    assert KEY not in raw
    assert KEY[-8:] not in raw
    over_http = get_json(f"{fp.url}/_fake/stats")["keys"][fp.fingerprint(KEY)]
    assert over_http["served"] == 1
    assert over_http["rate_limited"] == 1
    assert over_http["window"]["minute_requests"] == 1
    assert fp.stats()[fp.fingerprint(KEY)] == fp.key_stats(KEY)
    post(f"{fp.url}/_fake/reset_stats")
    assert fp.key_stats(KEY) == KeyStats()
    with pytest.raises(genai_errors.ClientError):  # the window survived reset_stats
        client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    post(f"{fp.url}/_fake/reset")
    assert client.models.generate_content(model="gemini-2.5-flash", contents="hi").text


def test_control_endpoint_rejects_bad_operations(fake_provider: FakeProvider) -> None:
    req = urllib.request.Request(
        f"{fake_provider.url}/_fake/control",
        data=json.dumps({"op": "inject", "args": {"fault": "explode"}}).encode(),
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=10)
    assert info.value.code == 400
    assert "fault must be one of" in json.loads(info.value.read())["error"]


def test_the_key_can_come_from_the_query_string(fake_provider: FakeProvider) -> None:
    url = f"{fake_provider.url}/v1beta/models/gemini-2.5-flash:generateContent?key={KEY}"
    body = json.dumps({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        reply = json.loads(resp.read())
    assert reply["candidates"][0]["content"]["parts"][0]["text"] == "You said: hi"
    assert fake_provider.key_stats(KEY).served == 1
    blank = gemini(fake_provider, key=" ")
    with pytest.raises(genai_errors.ClientError) as missing:
        blank.models.generate_content(model="m", contents="hi")
    assert (missing.value.code, missing.value.status) == (403, "PERMISSION_DENIED")
    assert "unregistered callers" in (missing.value.message or "")


def test_stream_without_sse_is_a_json_array(fake_provider: FakeProvider) -> None:
    url = f"{fake_provider.url}/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    body = json.dumps({"contents": [{"role": "user", "parts": [{"text": "a b"}]}]}).encode()
    req = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json", "x-goog-api-key": KEY}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        events = json.loads(resp.read())
    texts = [e["candidates"][0]["content"]["parts"][0]["text"] for e in events]
    assert "".join(texts) == "You said: a b"
    assert events[-1]["candidates"][0]["finishReason"] == "STOP"


@pytest.mark.multiprocess
def test_process_mode_serves_and_is_controlled_over_http() -> None:
    with FakeProvider(rpm=2, window=30.0, process=True, day_reset="America/Los_Angeles") as fp:
        assert fp.process
        assert "process" in repr(fp)
        client = openai.OpenAI(api_key="sk-proc", base_url=fp.openai_url, max_retries=0)
        hello = [{"role": "user", "content": "hi"}]
        fp.inject("overloaded", times=1)
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="m", messages=hello)  # type: ignore[arg-type]
        fp.set_limits("sk-proc", rpm=1)
        client.chat.completions.create(model="m", messages=hello)  # type: ignore[arg-type]
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="m", messages=hello)  # type: ignore[arg-type]
        stats = fp.key_stats("sk-proc")
        assert (stats.served, stats.rate_limited, stats.faults) == (1, 1, 1)
        assert [r["fault"] for r in fp.faults()] == []
        with pytest.raises(ValueError, match="probability"):
            fp.inject("reset", probability=2.0)
        client.close()
    assert not fp.running


def test_start_and_stop_are_idempotent_and_restartable() -> None:
    fp = FakeProvider()
    assert fp.start() is fp.start()
    first = fp.url
    fp.stop()
    fp.stop()
    assert not fp.running
    with fp:
        assert fp.url.startswith("http://127.0.0.1:")
    assert first.startswith("http://127.0.0.1:")


def test_hanging_requests_do_not_block_stop(fake_provider_factory: Factory) -> None:
    fp = fake_provider_factory()
    fp.inject("hang")  # default: 300 s
    client = openai.OpenAI(api_key="sk-h", base_url=fp.openai_url, max_retries=0, timeout=0.2)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    client.close()
    fp.stop()  # returns although the handler was still sleeping
    assert not fp.running


@pytest.mark.slow
async def test_two_hundred_concurrent_connections(fake_provider_factory: Factory) -> None:
    fp = fake_provider_factory(rpm=150, window=60.0)
    fp.inject("latency", delay=2.0)  # every request waits, so all 200 overlap
    async with openai.AsyncOpenAI(
        api_key="sk-many", base_url=fp.openai_url, max_retries=0, timeout=60
    ) as client:

        async def one(i: int) -> str:
            try:
                r = await client.chat.completions.create(
                    model="m",
                    messages=[{"role": "user", "content": f"n{i}"}],  # type: ignore[list-item]
                )
            except openai.RateLimitError:
                return "429"
            return r.choices[0].message.content or ""

        results = await asyncio.gather(*(one(i) for i in range(200)))
    assert results.count("429") == 50  # exactly the limit was admitted
    assert all(r.startswith("You said: n") for r in results if r != "429")
    stats = fp.key_stats("sk-many")
    assert (stats.served, stats.rate_limited) == (150, 50)
    server = fp.server_stats()
    assert server["peak_in_flight"] == 200
    assert (server["handled"], server["in_flight"]) == (200, 0)


# -- pytest plugin and CLI -------------------------------------------------------------


def test_fixture_gives_a_running_unlimited_provider(fake_provider: FakeProvider) -> None:
    assert fake_provider.running
    client = gemini(fake_provider)
    for _ in range(5):
        assert client.models.generate_content(model="m", contents="x").text


@pytest.mark.multiprocess
def test_the_plugin_module_does_not_import_aiohttp() -> None:
    code = (
        "import sys, rotating_llm.testing.pytest_plugin, rotating_llm.testing.cli; "
        "print('aiohttp' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cli_parser_options() -> None:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    args = parser.parse_args(["--port", "0", "--rpm", "5", "--window", "2", "--keys", "a,b"])
    assert (args.port, args.rpm, args.window, args.keys) == (0, 5, 2.0, "a,b")
    assert args.tpm_counts == "input"
    with pytest.raises(SystemExit):
        parser.parse_args(["--rpm", "0"])
    assert callable(run)


@pytest.mark.multiprocess
def test_cli_serves_until_sigterm_and_prints_its_url() -> None:
    code = (
        "import argparse, sys\n"
        "from rotating_llm.testing.cli import configure_parser, run\n"
        "p = argparse.ArgumentParser(); configure_parser(p)\n"
        "sys.exit(run(p.parse_args(sys.argv[1:])))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "--port", "0", "--rpm", "1", "--keys", "k1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("fake provider listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1].strip()
        client = openai.OpenAI(api_key="k1", base_url=f"{url}/v1", max_retries=0)
        hello = [{"role": "user", "content": "hi"}]
        assert client.chat.completions.create(model="m", messages=hello).choices  # type: ignore[arg-type]
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="m", messages=hello)  # type: ignore[arg-type]
        bad = openai.OpenAI(api_key="k2", base_url=f"{url}/v1", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.chat.completions.create(model="m", messages=hello)  # type: ignore[arg-type]
        client.close()
        bad.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
