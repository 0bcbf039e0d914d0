"""Redis over TLS (``rediss://``) and with an ACL user and password in the URL."""

from __future__ import annotations

import datetime
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from _redis_server import RedisProcess, free_port
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import make_keys, secrets_for
from rotating_llm import KeyManager, Settings, StoreError
from rotating_llm.secrets import EnvSecretStore

pytestmark = pytest.mark.redis

ACL_PASSWORD = "acl-pass-7f3c9e21b04d"  # a Redis credential: must never be shown


def _cert(
    subject: str,
    issuer_key: ec.EllipticCurvePrivateKey | None = None,
    issuer: x509.Name | None = None,
    ca: bool = False,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer_key or key, hashes.SHA256()), key


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A redis-server speaking only TLS, its certificate signed by a CA made here."""
    d = tmp_path_factory.mktemp("tls")
    ca, ca_key = _cert("rotating-llm test CA", ca=True)
    server, server_key = _cert("127.0.0.1", issuer_key=ca_key, issuer=ca.subject)
    pem = serialization.Encoding.PEM
    (d / "ca.pem").write_bytes(ca.public_bytes(pem))
    (d / "server.pem").write_bytes(server.public_bytes(pem))
    (d / "server.key").write_bytes(
        server_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            shutil.which("redis-server") or "redis-server",
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            str(d / "server.pem"),
            "--tls-key-file",
            str(d / "server.key"),
            "--tls-ca-cert-file",
            str(d / "ca.pem"),
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={d / 'ca.pem'}"
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
            break
        except redis.RedisError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.1)
    yield url, d
    proc.kill()
    proc.wait(timeout=10)


def manager(url: str) -> KeyManager:
    keys = make_keys(2, rpm=2)
    return KeyManager(
        keys,
        settings=Settings(redis_url=url, window_seconds=30, max_wait=0),
        secret_store=EnvSecretStore(secrets_for(keys)),
    )


def test_rediss_url_runs_the_limiter_over_tls(tls_redis: tuple[str, Path]) -> None:
    url, _ = tls_redis
    km = manager(url)
    lease = km.acquire("m", 5)
    assert km.store.primary.kind == "redis" and km.store.primary.description.startswith("rediss://")
    lease.complete(3)
    assert km.get_key_status(lease.key_id)["tpm_usage"] == 3
    km.close()


def test_tls_with_an_unknown_ca_is_refused_clearly(tls_redis: tuple[str, Path]) -> None:
    url, _ = tls_redis
    no_ca = url.split("?")[0]  # the system CAs do not know our test CA
    km = manager(no_ca)
    km.store.mode = "deny"
    with pytest.raises(StoreError) as info:
        km.acquire("m", 1)
    assert "rediss://127.0.0.1" in str(info.value)
    km.close()


@pytest.fixture(scope="module")
def acl_redis() -> Iterator[RedisProcess]:
    server = RedisProcess()
    server.start()
    admin = redis.Redis(host="127.0.0.1", port=server.port)
    admin.acl_setuser(
        "pool", enabled=True, passwords=[f"+{ACL_PASSWORD}"], keys=["rllm:*"], commands=["+@all"]
    )
    admin.config_set("requirepass", "admin-only-" + ACL_PASSWORD[::-1])  # default user locked
    yield server
    server.stop()


def test_acl_user_and_password_in_the_url(
    acl_redis: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"redis://pool:{ACL_PASSWORD}@127.0.0.1:{acl_redis.port}/0"
    km = manager(url)
    km.acquire("m", 1).complete()
    assert ACL_PASSWORD not in repr(km) + repr(km.store) + str(km.health_check())
    assert km.store.primary.description == f"redis://pool:***@127.0.0.1:{acl_redis.port}/0"
    km.close()
    wrong = manager(f"redis://pool:wrong-{ACL_PASSWORD}@127.0.0.1:{acl_redis.port}/0")
    wrong.store.mode = "deny"
    with pytest.raises(StoreError, match="refused the credentials") as info:
        wrong.acquire("m", 1)
    assert ACL_PASSWORD not in str(info.value) + caplog.text
    wrong.close()
