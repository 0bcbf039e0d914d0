"""Issue 7: a key rotated in its secret store mid-run (old value revoked at the provider)
is picked up with no failed request and without disabling the key.

Real servers on loopback: Redis, OpenBao (``bao server -dev``; token and AppRole auth),
moto's Secrets Manager (through boto3); the env store's mapping is updated in place.
The provider is the simulator with an allow-list holding every old and new value, so a
request is served only with a value the provider issued and has not revoked.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from _servers import BaoServer, MotoServer, moto_server, openbao_server

from rotating_llm import APIKey, KeyManager, Settings
from rotating_llm.langchain import RotatingChatModel
from rotating_llm.secrets import EnvSecretStore, SecretStore, env_var_for
from rotating_llm.secrets.aws import AWSSecretStore
from rotating_llm.secrets.vault import VaultSecretStore
from rotating_llm.testing import FakeProvider

__all__ = ["moto_server", "openbao_server"]  # re-exported fixtures

#: google-genai's async client subclasses aiohttp.ClientSession, which aiohttp deprecates.
AIOHTTP_INHERITANCE = (
    "ignore:Inheritance class AiohttpClientSession from ClientSession:DeprecationWarning"
)

pytestmark = [pytest.mark.redis, pytest.mark.filterwarnings(AIOHTTP_INHERITANCE)]

MODEL = "gemini-2.5-flash"
N_KEYS = 3
ROTATED = 0  # index of the key whose secret is rotated
POLICY = "rotation-test-read"
ROLE = "rotation-test-app"


def gemini_key() -> str:
    """A value shaped like a Gemini key (the redaction detectors know the shape)."""
    return "AIza" + secrets.token_urlsafe(27)[:35]


@dataclass
class Backend:
    """A secret store under test and how an operator writes a new value into it."""

    name: str
    settings: dict[str, Any]  # extra Settings fields (the store is built from them) ...
    store: SecretStore | None  # ... or an explicit store
    put: Callable[[str, str], None]


def vault_put(bao: BaoServer, key_id: str, value: str) -> None:
    bao.admin.secrets.kv.v2.create_or_update_secret(
        path=f"llm/{key_id}", secret={"api_key": value}, mount_point="secret"
    )


def approle_credentials(bao: BaoServer) -> tuple[str, str]:
    """A role that may read ``secret/llm/*`` only; its role id and a fresh secret id."""
    admin = bao.admin
    if "approle/" not in admin.sys.list_auth_methods():
        admin.sys.enable_auth_method("approle")
    admin.sys.create_or_update_policy(
        POLICY, 'path "secret/data/llm/*" { capabilities = ["read"] }'
    )
    admin.auth.approle.create_or_update_approle(ROLE, token_policies=[POLICY])
    role_id = admin.auth.approle.read_role_id(ROLE)["data"]["role_id"]
    secret_id = admin.auth.approle.generate_secret_id(ROLE)["data"]["secret_id"]
    return role_id, secret_id


@pytest.fixture
def aws_env(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> MotoServer:
    """Fake credentials and the moto endpoint, through the standard AWS variables only."""
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_server.endpoint)
    return moto_server


def make_backend(kind: str, request: pytest.FixtureRequest) -> Backend:
    if kind in ("vault-token", "vault-approle"):
        bao: BaoServer = request.getfixturevalue("openbao_server")
        auth: dict[str, Any]
        if kind == "vault-token":
            auth = {"vault_token": bao.root_token}
        else:
            role_id, secret_id = approle_credentials(bao)
            auth = {"vault_role_id": role_id, "vault_secret_id": secret_id}
        return Backend(
            kind,
            {
                "secret_store_type": "vault",
                "vault_addr": bao.addr,
                "vault_secret_path": "secret/llm",
                **auth,
            },
            None,
            lambda key_id, value: vault_put(bao, key_id, value),
        )
    if kind == "env":
        environ: dict[str, str] = {}

        def env_put(key_id: str, value: str) -> None:
            environ[env_var_for(key_id)] = value

        return Backend(kind, {}, EnvSecretStore(environ=environ), env_put)
    if kind == "aws":
        request.getfixturevalue("aws_env")
        import boto3

        admin = boto3.session.Session(region_name="us-east-1").client("secretsmanager")
        prefix = f"rot-{uuid.uuid4().hex[:8]}/"
        created: set[str] = set()

        def aws_put(key_id: str, value: str) -> None:
            name, body = prefix + key_id, json.dumps({"api_key": value})
            if key_id in created:
                admin.put_secret_value(SecretId=name, SecretString=body)
            else:
                admin.create_secret(Name=name, SecretString=body)
                created.add(key_id)

        store = AWSSecretStore("us-east-1", prefix=prefix)
        assert store.endpoint_url.startswith("http://127.0.0.1:")  # moto, not AWS
        return Backend(kind, {}, store, aws_put)
    raise AssertionError(kind)  # pragma: no cover


@dataclass
class Run:
    """The simulator, a pool of keys on it, their secret values (old and new), a manager."""

    fp: FakeProvider
    km: KeyManager
    keys: list[APIKey]
    old: dict[str, str] = field(repr=False)
    new: str = field(repr=False)
    backend: Backend = field(repr=False)

    @property
    def rotated_id(self) -> str:
        return self.keys[ROTATED].key_id

    def rotate(self) -> None:
        """What an operator does: store a new version, then revoke the old value."""
        self.backend.put(self.rotated_id, self.new)
        self.fp.revoke(self.old[self.rotated_id])

    def model(self) -> RotatingChatModel:
        return RotatingChatModel(
            model=MODEL, key_manager=self.km, max_wait=0, backoff_base=0.01, backoff_max=0.05
        )


@pytest.fixture(params=["vault-token", "vault-approle", "env", "aws"])
def run(request: pytest.FixtureRequest, redis_url: str, prefix: str) -> Iterator[Run]:
    backend = make_backend(request.param, request)
    tag = uuid.uuid4().hex[:8]
    old = {f"rot-{tag}-{i}": gemini_key() for i in range(N_KEYS)}
    new = gemini_key()
    for key_id, value in old.items():
        backend.put(key_id, value)
    with FakeProvider(window=60.0, keys=[*old.values(), new]) as fp:
        keys = [
            APIKey(
                key_id=k,
                model_name=MODEL,
                provider="gemini",
                rpm=1000,
                tpm=1_000_000,
                base_url=fp.url,
            )
            for k in old
        ]
        settings = Settings(redis_url=redis_url, key_prefix=prefix, max_wait=0, **backend.settings)
        km = KeyManager(keys, settings=settings, secret_store=backend.store)
        expected = VaultSecretStore if backend.name.startswith("vault") else type(backend.store)
        assert isinstance(km.secret_store, expected)
        try:
            yield Run(fp, km, keys, old, new, backend)
        finally:
            km.close()


def served_before_rotation(run: Run) -> dict[str, int]:
    """Every key served with its old value (so the old value is what the manager caches)."""
    served = {k: run.fp.key_stats(v).served for k, v in run.old.items()}
    assert all(n > 0 for n in served.values()), served
    return served


def check_after(run: Run, before: dict[str, int], max_auth_errors: int) -> None:
    rotated = run.rotated_id
    old_stats = run.fp.key_stats(run.old[rotated])
    new_stats = run.fp.key_stats(run.new)
    status = run.km.get_key_status(rotated)
    assert not status["disabled"], status["disabled_reason"]
    assert not status["in_cooldown"]
    assert new_stats.served > 0  # the new value was picked up and used ...
    assert new_stats.auth_errors == 0
    assert old_stats.served == before[rotated]  # ... and the old one never served again
    assert 1 <= old_stats.auth_errors <= max_auth_errors  # just what it took to notice
    for key_id in run.old:  # the other keys went on serving
        if key_id != rotated:
            assert run.fp.key_stats(run.old[key_id]).served > before[key_id]
            assert run.fp.key_stats(run.old[key_id]).auth_errors == 0
    # the cached copy is the new value now
    assert run.km.secret_store.get_secret(rotated).get_secret_value() == run.new


@pytest.mark.slow
def test_rotation_mid_run_no_failed_request(run: Run) -> None:
    llm = run.model()
    replies = [llm.invoke(f"before {i}") for i in range(2 * N_KEYS)]
    before = served_before_rotation(run)
    run.rotate()
    replies += [llm.invoke(f"after {i}") for i in range(3 * N_KEYS)]
    assert len(replies) == 5 * N_KEYS  # every request returned a reply, none raised
    assert all(r.content for r in replies)
    used = [r.response_metadata["key_id"] for r in replies[2 * N_KEYS :]]
    assert used.count(run.rotated_id) >= 2  # the rotated key stayed in rotation
    # one request at a time: exactly one auth error on the old value told of the rotation
    check_after(run, before, max_auth_errors=1)
    retried = [r for r in replies if r.response_metadata["attempts"] > 1]
    assert len(retried) == 1


@pytest.mark.parametrize("run", ["vault-token", "env"], indirect=True)
async def test_rotation_mid_run_concurrent_async(run: Run) -> None:
    llm = run.model()
    concurrency = 6
    try:

        async def batch(tag: str) -> list[Any]:
            return await asyncio.gather(*(llm.ainvoke(f"{tag} {i}") for i in range(concurrency)))

        replies = await batch("before")
        before = served_before_rotation(run)
        await asyncio.to_thread(run.rotate)
        replies += await batch("during")  # several in flight with the old cached value
        replies += await batch("after")
        assert len(replies) == 3 * concurrency
        assert all(r.content for r in replies)
        check_after(run, before, max_auth_errors=concurrency)
    finally:
        await run.km.aclose()
