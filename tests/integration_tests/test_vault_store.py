"""VaultSecretStore against a real OpenBao dev server on loopback."""

from __future__ import annotations

import secrets
import time
from typing import Any

import pytest

from rotating_llm.config import Settings
from rotating_llm.errors import ConfigError, SecretStoreError
from rotating_llm.secrets import get_secret_store, test_secret_access
from rotating_llm.secrets.vault import VaultSecretStore, parse_verify, split_secret_path

try:
    from tests.integration_tests._servers import BaoServer, free_port, openbao_server
except ImportError:  # tests/ is not a package: its directory is on sys.path
    from _servers import BaoServer, free_port, openbao_server  # type: ignore[no-redef]

__all__ = ["openbao_server"]  # re-exported fixture

READ_POLICY = 'path "secret/data/llm/*" { capabilities = ["read"] }'
OTHER_POLICY = 'path "secret/data/other/*" { capabilities = ["read"] }'


def fake_key() -> str:
    return "AIza" + secrets.token_urlsafe(27)[:35]


@pytest.fixture
def bao(openbao_server: BaoServer) -> BaoServer:
    return openbao_server


def put(bao: BaoServer, key_id: str, value: str, path: str = "llm") -> None:
    bao.admin.secrets.kv.v2.create_or_update_secret(
        path=f"{path}/{key_id}", secret={"api_key": value}, mount_point="secret"
    )


def settings(bao: BaoServer, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "secret_store_type": "vault",
        "vault_addr": bao.addr,
        "vault_token": bao.root_token,
        "vault_secret_path": "secret/llm",
        **extra,
    }
    return Settings(**values)


def unique_id() -> str:
    return "key-" + secrets.token_hex(4)


def test_token_auth_reads_api_key_field(bao: BaoServer) -> None:
    key_id, value = unique_id(), fake_key()
    put(bao, key_id, value)
    store = get_secret_store(settings(bao))
    assert isinstance(store, VaultSecretStore)
    assert store.auth_method == "token"
    assert store.location(key_id) == f"secret/llm/{key_id}#api_key"
    assert store.get_secret(key_id).get_secret_value() == value
    assert value not in repr(store)
    assert bao.root_token not in repr(store)
    store.close()


@pytest.fixture
def approle(bao: BaoServer) -> tuple[str, str]:
    admin = bao.admin
    if "approle/" not in admin.sys.list_auth_methods():
        admin.sys.enable_auth_method("approle")
    admin.sys.create_or_update_policy("llm-read", READ_POLICY)
    admin.sys.create_or_update_policy("other-read", OTHER_POLICY)
    admin.auth.approle.create_or_update_approle("llm-app", token_policies=["llm-read"])
    role_id = admin.auth.approle.read_role_id("llm-app")["data"]["role_id"]
    secret_id = admin.auth.approle.generate_secret_id("llm-app")["data"]["secret_id"]
    return role_id, secret_id


def test_approle_auth(bao: BaoServer, approle: tuple[str, str]) -> None:
    key_id, value = unique_id(), fake_key()
    put(bao, key_id, value)
    role_id, secret_id = approle
    store = VaultSecretStore.from_settings(
        settings(bao, vault_token=None, vault_role_id=role_id, vault_secret_id=secret_id)
    )
    assert store.auth_method == "approle"
    assert store.get_secret(key_id).get_secret_value() == value
    assert secret_id not in repr(store)


def test_approle_bad_secret_id_is_a_clear_error(bao: BaoServer, approle: tuple[str, str]) -> None:
    role_id, _ = approle
    wrong = secrets.token_hex(16)
    store = VaultSecretStore(bao.addr, role_id=role_id, secret_id=wrong)
    with pytest.raises(SecretStoreError, match="AppRole login refused") as info:
        store.get_secret("anything")
    assert wrong not in str(info.value)
    assert info.value.store == "vault"
    assert info.value.key_id == "anything"


def test_missing_secret(bao: BaoServer) -> None:
    store = VaultSecretStore(bao.addr, token=bao.root_token)
    with pytest.raises(SecretStoreError, match=r"'nope-404'.*no such secret") as info:
        store.get_secret("nope-404")
    assert bao.root_token not in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


def test_deleted_and_destroyed_versions(bao: BaoServer) -> None:
    key_id, value = unique_id(), fake_key()
    put(bao, key_id, value)
    bao.admin.secrets.kv.v2.delete_latest_version_of_secret(
        path=f"llm/{key_id}", mount_point="secret"
    )
    store = VaultSecretStore(bao.addr, token=bao.root_token)
    with pytest.raises(SecretStoreError, match=r"current version \(1\) was deleted"):
        store.get_secret(key_id)
    put(bao, key_id, fake_key())
    bao.admin.secrets.kv.v2.destroy_secret_versions(
        path=f"llm/{key_id}", versions=[2], mount_point="secret"
    )
    with pytest.raises(SecretStoreError, match=r"current version \(2\) was destroyed"):
        store.get_secret(key_id)


def test_denied_read(bao: BaoServer) -> None:
    key_id = unique_id()
    put(bao, key_id, fake_key())
    bao.admin.sys.create_or_update_policy("other-read", OTHER_POLICY)
    token = bao.admin.auth.token.create(policies=["other-read"], ttl="10m")["auth"]["client_token"]
    store = VaultSecretStore(bao.addr, token=token)
    with pytest.raises(SecretStoreError, match="permission denied") as info:
        store.get_secret(key_id)
    assert token not in str(info.value)
    report = test_secret_access(key_id, store)
    assert report["found"] is False
    assert report["store"] == "vault"
    assert "permission denied" in report["error"]


def test_wrong_field_and_unreachable_server(bao: BaoServer) -> None:
    key_id = unique_id()
    bao.admin.secrets.kv.v2.create_or_update_secret(
        path=f"llm/{key_id}", secret={"token": "x" * 20}, mount_point="secret"
    )
    store = VaultSecretStore(bao.addr, token=bao.root_token)
    with pytest.raises(SecretStoreError, match="no field 'api_key'"):
        store.get_secret(key_id)
    dead = VaultSecretStore(f"http://127.0.0.1:{free_port()}", token="t-" + "9" * 20)
    with pytest.raises(SecretStoreError, match="unreachable") as info:
        dead.get_secret(key_id)
    assert "t-999" not in str(info.value)


def test_rotation_invalidate_reads_new_version(bao: BaoServer) -> None:
    key_id, old, new = unique_id(), fake_key(), fake_key()
    put(bao, key_id, old)
    store = VaultSecretStore(bao.addr, token=bao.root_token, cache_ttl=3600)
    assert store.get_secret(key_id).get_secret_value() == old
    put(bao, key_id, new)  # version 2
    assert store.get_secret(key_id).get_secret_value() == old  # cached
    store.invalidate(key_id)
    assert store.get_secret(key_id).get_secret_value() == new


def test_cache_ttl_expiry(bao: BaoServer) -> None:
    key_id, old, new = unique_id(), fake_key(), fake_key()
    put(bao, key_id, old)
    store = VaultSecretStore(bao.addr, token=bao.root_token, cache_ttl=0.2)
    assert store.get_secret(key_id).get_secret_value() == old
    put(bao, key_id, new)
    age = store.cache_age(key_id)
    assert age is not None
    time.sleep(0.3)  # past the TTL: the next read goes to the server
    assert store.get_secret(key_id).get_secret_value() == new
    report = store.describe(key_id)
    assert report["found"] is True
    assert report["location"] == f"secret/llm/{key_id}#api_key"
    assert new not in str(report)


def test_namespace_and_verify_settings(bao: BaoServer, tmp_path: Any) -> None:
    assert parse_verify("true") is True
    assert parse_verify("FALSE") is False
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert parse_verify(str(ca)) == str(ca)
    with pytest.raises(ConfigError, match="does not exist"):
        parse_verify(str(tmp_path / "missing.pem"))
    assert split_secret_path("secret/llm") == ("secret", "llm")
    assert split_secret_path("/kv/teams/llm/") == ("kv", "teams/llm")
    store = VaultSecretStore.from_settings(
        settings(bao, vault_namespace="team-a", vault_verify="false")
    )
    assert store.namespace == "team-a"
    assert store._client.adapter.namespace == "team-a"
    assert (
        store._client.adapter._kwargs.get("verify", store._client.adapter.session.verify) is False
    )


def test_config_errors_name_no_secret() -> None:
    with pytest.raises(ConfigError, match="VAULT_ADDR"):
        VaultSecretStore("", token="abc")
    with pytest.raises(ConfigError, match="VAULT_TOKEN or VAULT_ROLE_ID"):
        VaultSecretStore("http://127.0.0.1:1")
    with pytest.raises(ConfigError, match="both VAULT_ROLE_ID and VAULT_SECRET_ID"):
        VaultSecretStore("http://127.0.0.1:1", role_id="r")


def test_errors_carry_no_library_context(bao: BaoServer) -> None:
    key_id = unique_id()
    put(bao, key_id, fake_key())
    bao.admin.secrets.kv.v2.destroy_secret_versions(
        path=f"llm/{key_id}", versions=[1], mount_point="secret"
    )
    store = VaultSecretStore(bao.addr, token=bao.root_token)
    with pytest.raises(SecretStoreError, match="destroyed") as info:
        store.get_secret(key_id)
    assert info.value.__context__ is None
    assert info.value.__cause__ is None
