"""AWSSecretStore against moto's HTTP server on loopback, through boto3 as a real endpoint."""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest

from rotating_llm.config import Settings
from rotating_llm.errors import SecretStoreError
from rotating_llm.secrets import get_secret_store, test_secret_access
from rotating_llm.secrets.aws import AWSSecretStore

try:
    from tests.integration_tests._servers import MotoServer, free_port, moto_server
except ImportError:  # tests/ is not a package: its directory is on sys.path
    from _servers import MotoServer, free_port, moto_server  # type: ignore[no-redef]

__all__ = ["moto_server"]  # re-exported fixture


@pytest.fixture
def aws_env(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> MotoServer:
    """Fake credentials and the moto endpoint through the standard AWS variables only."""
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_server.endpoint)
    return moto_server


def admin_client(region: str) -> Any:
    import boto3

    return boto3.session.Session(region_name=region).client("secretsmanager")


def fake_key() -> str:
    return "gsk_" + secrets.token_hex(26)


def settings(**extra: Any) -> Settings:
    values: dict[str, Any] = {"secret_store_type": "aws", "aws_region": "us-east-1", **extra}
    return Settings(**values)


def test_endpoint_from_standard_variable(aws_env: MotoServer) -> None:
    store = get_secret_store(settings())
    assert isinstance(store, AWSSecretStore)
    assert store.endpoint_url == aws_env.endpoint
    store.close()


def test_generic_endpoint_variable(aws_env: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL_SECRETS_MANAGER")
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_env.endpoint)
    key_id, value = "k-" + secrets.token_hex(4), fake_key()
    admin_client("us-east-1").create_secret(Name=f"llm/{key_id}", SecretString=value)
    store = AWSSecretStore.from_settings(settings())
    assert store.endpoint_url == aws_env.endpoint
    assert store.get_secret(key_id).get_secret_value() == value


def test_json_and_plain_secret_strings(aws_env: MotoServer) -> None:
    client = admin_client("us-east-1")
    json_id, plain_id = "j-" + secrets.token_hex(4), "p-" + secrets.token_hex(4)
    json_value, plain_value = fake_key(), fake_key()
    client.create_secret(Name=f"llm/{json_id}", SecretString=json.dumps({"api_key": json_value}))
    client.create_secret(Name=f"llm/{plain_id}", SecretString=plain_value)
    store = AWSSecretStore.from_settings(settings())
    assert store.get_secret(json_id).get_secret_value() == json_value
    assert store.get_secret(plain_id).get_secret_value() == plain_value
    assert store.location(json_id) == f"secretsmanager:us-east-1:llm/{json_id}"
    assert json_value not in repr(store)


def test_json_without_field(aws_env: MotoServer) -> None:
    key_id = "n-" + secrets.token_hex(4)
    hidden = fake_key()
    admin_client("us-east-1").create_secret(
        Name=f"llm/{key_id}", SecretString=json.dumps({"key": hidden})
    )
    with pytest.raises(SecretStoreError, match="no string field 'api_key'") as info:
        AWSSecretStore.from_settings(settings()).get_secret(key_id)
    assert hidden not in str(info.value)


def test_not_found(aws_env: MotoServer) -> None:
    store = AWSSecretStore.from_settings(settings(aws_secret_prefix="team/"))
    with pytest.raises(SecretStoreError, match=r"team/ghost.*no such secret") as info:
        store.get_secret("ghost")
    assert info.value.store == "aws"
    assert info.value.__cause__ is None
    report = test_secret_access("ghost", store)
    assert report["found"] is False
    assert report["location"] == "secretsmanager:us-east-1:team/ghost"


def test_region_is_honoured(aws_env: MotoServer) -> None:
    key_id, value = "r-" + secrets.token_hex(4), fake_key()
    admin_client("eu-west-1").create_secret(Name=f"llm/{key_id}", SecretString=value)
    in_region = AWSSecretStore.from_settings(settings(aws_region="eu-west-1"))
    assert in_region.get_secret(key_id).get_secret_value() == value
    other_region = AWSSecretStore.from_settings(settings(aws_region="us-east-1"))
    with pytest.raises(SecretStoreError, match="no such secret"):
        other_region.get_secret(key_id)


def test_rotation_and_cache(aws_env: MotoServer) -> None:
    key_id, old, new = "rot-" + secrets.token_hex(4), fake_key(), fake_key()
    client = admin_client("us-east-1")
    client.create_secret(Name=f"llm/{key_id}", SecretString=old)
    store = AWSSecretStore.from_settings(settings(secret_cache_ttl=3600))
    assert store.get_secret(key_id).get_secret_value() == old
    client.put_secret_value(SecretId=f"llm/{key_id}", SecretString=new)
    assert store.get_secret(key_id).get_secret_value() == old
    store.invalidate(key_id)
    assert store.get_secret(key_id).get_secret_value() == new


def test_deleted_secret(aws_env: MotoServer) -> None:
    key_id = "del-" + secrets.token_hex(4)
    client = admin_client("us-east-1")
    client.create_secret(Name=f"llm/{key_id}", SecretString=fake_key())
    client.delete_secret(SecretId=f"llm/{key_id}", RecoveryWindowInDays=7)
    with pytest.raises(SecretStoreError, match="scheduled for deletion"):
        AWSSecretStore.from_settings(settings()).get_secret(key_id)


def test_unreachable_endpoint(aws_env: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", dead)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    store = AWSSecretStore.from_settings(settings())
    with pytest.raises(SecretStoreError, match="unreachable") as info:
        store.get_secret("any")
    assert dead in str(info.value)
    assert "testing" not in str(info.value)


def test_no_credentials(aws_env: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for var in ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        monkeypatch.delenv(var, raising=False)
    store = AWSSecretStore.from_settings(settings())
    with pytest.raises(SecretStoreError, match="no AWS credentials"):
        store.get_secret("any")
