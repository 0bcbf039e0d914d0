"""Issue 7's audit: a whole workload with every logger at DEBUG leaves no secret anywhere.

Three pools behind ``RotatingChatModel`` on the simulator: Gemini keys whose secrets live
in a real OpenBao (vault store, token auth), OpenAI keys from the environment (env store)
and Gemini keys in AWS Secrets Manager (moto). The workload has successes, a real 429 from
the simulator (a tight per-key limit there), a 503 retried, a stream, a stream cut
mid-way, async calls and an async stream, a revoked key (disabled), a pool with no
capacity (``max_wait=0``), direct leases, status and health reports, keys files persisted
to disk and the library's own log file (``configure_logging``, ``ROTATING_LLM_LOG_FILE``).
Then every secret value (and the vault token), whole or any 19 consecutive characters of
it, is searched for in: the captured logs (in memory and a log file), stdout/stderr,
every exception raised (whole chains and tracebacks), reprs of the manager, leases,
model, stores and settings, the model's serialisations, LangChain callback payloads, the
library's events, a dump of every Redis key under the test prefix (all types) and every
file the workload wrote.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _audit_helpers import (
    Evidence,
    debug_everything,
    files_under,
    find_leaks,
    raise_every_logger_to_debug,
    redis_dump,
)
from _servers import BaoServer, MotoServer, moto_server, openbao_server
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.load import dumpd

from rotating_llm import AllKeysExhaustedError, APIKey, KeyManager, Settings
from rotating_llm.events import add_listener, remove_listener
from rotating_llm.langchain import RotatingChatModel
from rotating_llm.logs import close_log_file, configure_logging
from rotating_llm.secrets import env_var_for, test_secret_access
from rotating_llm.testing import FakeProvider

__all__ = ["moto_server", "openbao_server"]  # re-exported fixtures

#: google-genai's async client subclasses aiohttp.ClientSession, which aiohttp deprecates.
AIOHTTP_INHERITANCE = (
    "ignore:Inheritance class AiohttpClientSession from ClientSession:DeprecationWarning"
)

pytestmark = [pytest.mark.redis, pytest.mark.filterwarnings(AIOHTTP_INHERITANCE)]

GEMINI = "gemini-2.5-flash"
GPT = "gpt-4o-mini"
GEMINI_PRO = "gemini-2.5-pro"
N_KEYS = 3


def shapeless_value() -> str:
    """A secret no redaction detector recognises: only registering it can mask it."""
    return "plain" + secrets.token_hex(20)


def secret_values(kind: str, n: int, *, shapeless: bool = True) -> list[str]:
    """Values shaped like the provider's keys, and (by default) one with no shape.

    A shapeless value is masked only if the library registered it; a shaped one would
    also be caught by the redaction detectors. Both must stay out of everything.
    """
    shaped = {
        "gemini": lambda: "AIza" + secrets.token_urlsafe(27)[:35],
        "openai": lambda: "sk-proj-" + secrets.token_urlsafe(48),
    }[kind]
    if not shapeless:
        return [shaped() for _ in range(n)]
    return [shaped() for _ in range(n - 1)] + [shapeless_value()]


class Recorder(BaseCallbackHandler):
    """Keeps the text of every LangChain callback payload."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def on_chat_model_start(self, serialized: Any, messages: Any, **kw: Any) -> None:
        self.texts.append(json.dumps(serialized, default=str) + repr(messages) + repr(kw))

    def on_llm_new_token(self, token: str, **kw: Any) -> None:
        self.texts.append(token + repr(kw))

    def on_llm_end(self, response: Any, **kw: Any) -> None:
        self.texts.append(repr(response) + repr(kw))

    def on_llm_error(self, error: BaseException, **kw: Any) -> None:
        self.texts.append(repr(error) + str(error) + repr(kw))


def consume(stream: Iterator[Any], into: list[Any]) -> None:
    for chunk in stream:
        into.append(chunk)


def wait_for(predicate: Any, step: Any, limit: int) -> None:
    """Run ``step`` until ``predicate()`` holds (at most ``limit`` times)."""
    for _ in range(limit):
        if predicate():
            return
        step()
    assert predicate()


def run_pool_workload(
    llm: RotatingChatModel,
    km: KeyManager,
    fp: FakeProvider,
    secret_of: dict[str, str],
    ev: Evidence,
) -> None:
    """Successes, 429, 503, streams, a revoked key, direct leases, an exhausted pool."""
    ids = [k.key_id for k in km.keys]
    pool = llm.model
    asked = iter(range(10_000))

    def ask() -> None:
        reply = llm.invoke(f"question {next(asked)} for pool {pool}")
        assert reply.content
        ev.add("replies", repr(reply), reply.model_dump_json())

    for _ in range(N_KEYS):
        ask()
    assert all(fp.key_stats(secret_of[k]).served > 0 for k in ids)

    # a real 429 from the simulator: its own limit of one request per window on ids[0]
    limited = secret_of[ids[0]]
    fp.set_limits(limited, rpm=1)
    wait_for(lambda: fp.key_stats(limited).rate_limited > 0, ask, 3 * N_KEYS)
    assert km.get_key_status(ids[0])["in_cooldown"]

    # a model-side 503, retried
    fp.inject("overloaded", times=1)
    ask()
    assert sum(fp.key_stats(v).faults for v in secret_of.values()) == 1

    # a stream, and a stream cut after its first chunk reached the caller
    chunks = list(llm.stream(f"stream for pool {pool}"))
    assert chunks
    ev.add("replies", *map(repr, chunks))
    fp.inject("stream_cut", times=1, after_chunks=1)
    cut: list[Any] = []
    with pytest.raises(Exception) as cut_info:
        consume(llm.stream(f"long stream for pool {pool} " * 20), cut)
    assert cut  # the first chunk had reached the caller: no switch of key, an error
    ev.add_exception("exceptions", cut_info.value)

    # a revoked key: refused by the provider, disabled, the request served by another
    revoked = ids[1]
    fp.revoke(secret_of[revoked])
    wait_for(lambda: km.get_key_status(revoked)["disabled"], ask, 3 * N_KEYS)
    assert fp.key_stats(secret_of[revoked]).auth_errors >= 1

    # leases taken directly: reprs, settled every way
    lease = km.acquire(pool, 10)
    ev.add("reprs", repr(lease), str(lease), repr(lease.reservation), lease.api_key)
    lease.release()

    # no capacity left: every remaining key cooled down, max_wait=0
    for k in ids:
        if not km.get_key_status(k)["disabled"]:
            km.mark_key_unhealthy(k, 60, reason="audit: no capacity")
    with pytest.raises(AllKeysExhaustedError) as exhausted_info:
        km.acquire(pool, 10)
    ev.add_exception("exceptions", exhausted_info.value)
    with pytest.raises(Exception) as model_exhausted:
        llm.invoke("no capacity")
    assert "capacity" in str(model_exhausted.value).lower()
    ev.add_exception("exceptions", model_exhausted.value)
    with pytest.raises(Exception) as stream_exhausted:
        list(llm.stream("no capacity either"))
    ev.add_exception("exceptions", stream_exhausted.value)

    for k in ids:  # a fresh start for the async part
        km.clear_cooldown(k)
    km.enable_key(revoked)  # still revoked at the provider: refused and disabled again

    async def async_part() -> None:
        try:
            replies = await asyncio.gather(*(llm.ainvoke(f"async {i}") for i in range(4)))
            ev.add("replies", *map(repr, replies))
            async for chunk in llm.astream("async stream"):
                ev.add("replies", repr(chunk))
        finally:
            await km.store.primary.aclose()

    asyncio.run(async_part())
    assert km.get_key_status(revoked)["disabled"]
    raise_every_logger_to_debug()


def gather_reprs(llm: RotatingChatModel, km: KeyManager, ev: Evidence) -> None:
    ev.add(
        "reprs",
        repr(km),
        str(km),
        repr(km.limiter),
        repr(km.store),
        repr(km.secret_store),
        repr(km.settings),
        km.settings.model_dump(),
        km.settings.model_dump_json(),
        *map(repr, km.keys),
        km.get_all_key_statuses(),
        km.health_check(),
        *(test_secret_access(k.key_id, km.secret_store) for k in km.keys),
        test_secret_access("no-such-key", km.secret_store),
        repr(llm),
        str(llm),
        repr(llm.manager),
        repr(llm._providers),  # the provider models built per key
        llm._identifying_params,
        llm._get_ls_params(),
    )
    ev.add(
        "serialisation",
        json.dumps(dumpd(llm), default=str),
        llm.to_json(),
        llm.model_dump(),
        llm.model_dump_json(),
        *(k.model_dump_json() for k in km.keys),
    )


@pytest.fixture
def aws_env(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> MotoServer:
    """Fake credentials and the moto endpoint, through the standard AWS variables only."""
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_server.endpoint)
    return moto_server


@pytest.fixture
def simulator() -> Iterator[FakeProvider]:
    with FakeProvider(window=60.0) as fp:
        yield fp


@pytest.mark.slow
def test_whole_workload_leaks_no_secret(
    openbao_server: BaoServer,
    aws_env: MotoServer,
    simulator: FakeProvider,
    redis_url: str,
    prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    bao, fp = openbao_server, simulator
    tag = uuid.uuid4().hex[:8]
    written = tmp_path / "written"
    written.mkdir()
    # the library's own rotating log file (configure_logging reads it from the environment)
    monkeypatch.setenv("ROTATING_LLM_LOG_FILE", str(written / "rotating_llm.log"))

    # Gemini keys, secrets in OpenBao (KV v2 secret/llm/<key_id>#api_key)
    vault_secrets = dict(
        zip(
            [f"audit-{tag}-v{i}" for i in range(N_KEYS)],
            secret_values("gemini", N_KEYS),
            strict=True,
        )
    )
    for key_id, value in vault_secrets.items():
        bao.admin.secrets.kv.v2.create_or_update_secret(
            path=f"llm/{key_id}", secret={"api_key": value}, mount_point="secret"
        )
    # OpenAI keys, secrets in the environment (API_KEY_<KEY_ID>)
    env_secrets = dict(
        zip(
            [f"audit-{tag}-e{i}" for i in range(N_KEYS)],
            secret_values("openai", N_KEYS),
            strict=True,
        )
    )
    for key_id, value in env_secrets.items():
        monkeypatch.setenv(env_var_for(key_id), value)
    # Gemini keys, secrets in AWS Secrets Manager (moto), SecretString {"api_key": ...}
    import boto3

    aws_prefix = f"audit-{tag}/"
    # (shaped values; a shapeless one is covered by the botocore-body test below)
    aws_secrets = dict(
        zip(
            [f"audit-{tag}-a{i}" for i in range(N_KEYS)],
            secret_values("gemini", N_KEYS, shapeless=False),
            strict=True,
        )
    )
    aws_admin = boto3.session.Session(region_name="us-east-1").client("secretsmanager")
    for key_id, value in aws_secrets.items():
        aws_admin.create_secret(
            Name=aws_prefix + key_id, SecretString=json.dumps({"api_key": value})
        )
    all_secrets = {**vault_secrets, **env_secrets, **aws_secrets}
    searched = {f"secret of {k}": v for k, v in all_secrets.items()}
    searched["vault token"] = bao.root_token

    ev = Evidence()
    events: list[str] = []

    def on_event(name: str, fields: dict[str, Any]) -> None:
        events.append(f"{name} {fields!r}")

    recorder = Recorder()
    add_listener(on_event)
    managers: list[KeyManager] = []
    try:
        with debug_everything(written / "debug.log") as logs:
            configure_logging(Settings.from_env(), level="DEBUG")
            vault_km = KeyManager(
                [
                    APIKey(
                        key_id=k,
                        model_name=GEMINI,
                        provider="gemini",
                        rpm=100,
                        tpm=10**6,
                        base_url=fp.url,
                    )
                    for k in vault_secrets
                ],
                key_store_path=written / "vault-keys.json",
                settings=Settings(
                    redis_url=redis_url,
                    key_prefix=f"{prefix}vault:",
                    max_wait=0,
                    secret_store_type="vault",
                    vault_addr=bao.addr,
                    vault_token=bao.root_token,
                    vault_secret_path="secret/llm",
                    log_file=written / "rotating_llm.log",
                ),
            )
            managers.append(vault_km)
            env_km = KeyManager(
                [
                    APIKey(
                        key_id=k,
                        model_name=GPT,
                        provider="openai",
                        rpm=100,
                        tpm=10**6,
                        base_url=fp.openai_url,
                    )
                    for k in env_secrets
                ],
                key_store_path=written / "env-keys.json",
                settings=Settings(
                    redis_url=redis_url,
                    key_prefix=f"{prefix}env:",
                    max_wait=0,
                    secret_store_type="env",
                    log_file=written / "rotating_llm.log",
                ),
            )
            managers.append(env_km)
            aws_km = KeyManager(
                [
                    APIKey(
                        key_id=k,
                        model_name=GEMINI_PRO,
                        provider="gemini",
                        rpm=100,
                        tpm=10**6,
                        base_url=fp.url,
                    )
                    for k in aws_secrets
                ],
                key_store_path=written / "aws-keys.json",
                settings=Settings(
                    redis_url=redis_url,
                    key_prefix=f"{prefix}aws:",
                    max_wait=0,
                    secret_store_type="aws",
                    aws_region="us-east-1",
                    aws_secret_prefix=aws_prefix,
                    log_file=written / "rotating_llm.log",
                ),
            )
            managers.append(aws_km)
            assert type(vault_km.secret_store).__name__ == "VaultSecretStore"
            assert type(env_km.secret_store).__name__ == "EnvSecretStore"
            assert type(aws_km.secret_store).__name__ == "AWSSecretStore"
            pools = ((vault_km, vault_secrets), (env_km, env_secrets), (aws_km, aws_secrets))
            for km, secret_of in pools:
                llm = RotatingChatModel(
                    model=km.keys[0].model_name,
                    key_manager=km,
                    max_wait=0,
                    backoff_base=0.01,
                    backoff_max=0.05,
                    callbacks=[recorder],
                )
                run_pool_workload(llm, km, fp, secret_of, ev)
                # the keys file, persisted with one more key
                extra = km.keys[0].model_copy(update={"key_id": f"{km.keys[0].key_id}-x"})
                km.add_key(extra, persist=True)
                gather_reprs(llm, km, ev)
            log_text = logs.getvalue()
    finally:
        remove_listener(on_event)
        for km in managers:
            km.close()
        close_log_file()

    out, err = capfd.readouterr()
    ev.add("logs", log_text)
    ev.add("stdout/stderr", out, err)
    ev.add("callbacks", *recorder.texts)
    ev.add("events", *events)
    n_keys, dump = redis_dump(redis_url, prefix)
    ev.add("redis", dump)
    files = files_under(tmp_path)
    for name, text in files.items():
        ev.add(f"file {name}", text)

    # the audit looked at real material ...
    assert "DEBUG" in log_text and "httpx" in log_text  # third-party DEBUG lines captured
    assert "API_KEY_INVALID" in log_text or "401" in log_text  # the failures were logged
    assert "urllib3" in log_text  # the vault reads (hvac, requests)
    assert "botocore" in log_text  # the AWS reads
    assert "openai" in log_text  # the OpenAI SDK's requests
    names = {Path(f).name for f in files}
    assert {"debug.log", "vault-keys.json", "env-keys.json", "aws-keys.json"} <= names
    library_log = files["written/rotating_llm.log"]
    assert "rotating_llm.langchain" in library_log and "API_KEY_INVALID" in library_log
    assert n_keys > 10  # the workload wrote state for both pools
    assert len(ev.channels["exceptions"]) >= 8
    assert any("key.disabled" in e for e in events)
    assert any(k in dump for k in vault_secrets) or "vault:" in dump
    # ... and found no secret in any of it
    assert find_leaks(searched, ev) == {}
    # the secrets were really used, so their absence means something
    for value in all_secrets.values():
        assert fp.key_stats(value).served > 0


def test_aws_first_read_leaks_no_secret_into_botocore_debug_log(
    aws_env: MotoServer, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    import boto3

    tag = uuid.uuid4().hex[:8]
    key_id, value = f"audit-{tag}-a0", shapeless_value()
    boto3.session.Session(region_name="us-east-1").client("secretsmanager").create_secret(
        Name=f"audit-{tag}/{key_id}", SecretString=json.dumps({"api_key": value})
    )
    settings = Settings(
        redis_url=redis_url,
        key_prefix=prefix,
        max_wait=0,
        secret_store_type="aws",
        aws_region="us-east-1",
        aws_secret_prefix=f"audit-{tag}/",
    )
    key = APIKey(key_id=key_id, model_name=GEMINI_PRO, provider="gemini", rpm=10, tpm=10**6)
    with debug_everything(tmp_path / "debug.log") as logs:
        km = KeyManager([key], settings=settings)  # installs the redaction, as in an app
        try:
            lease = km.acquire(GEMINI_PRO, 10)  # reads the secret from the store
            assert lease.api_key.get_secret_value() == value
            lease.release()
        finally:
            km.close()
        text = logs.getvalue()
    assert "botocore.parsers" in text
    ev = Evidence()
    ev.add("logs", text)
    assert find_leaks({"the AWS secret": value}, ev) == {}
