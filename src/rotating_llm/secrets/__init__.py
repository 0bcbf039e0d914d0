"""Secret stores: where API keys are read from (``SECRET_STORE_TYPE`` = env, vault, aws)."""

from __future__ import annotations

from typing import Any

from rotating_llm.config import Settings
from rotating_llm.errors import ConfigError
from rotating_llm.secrets.base import SecretStore
from rotating_llm.secrets.env import EnvSecretStore, env_var_for

__all__ = ["EnvSecretStore", "SecretStore", "env_var_for", "get_secret_store", "test_secret_access"]


def get_secret_store(settings: Settings | None = None) -> SecretStore:
    """The store ``settings.secret_store_type`` names, configured from ``settings``."""
    settings = settings or Settings.from_env()
    kind = settings.secret_store_type
    if kind == "env":
        return EnvSecretStore(cache_ttl=settings.secret_cache_ttl)
    if kind == "vault":
        from rotating_llm.secrets.vault import VaultSecretStore

        return VaultSecretStore.from_settings(settings)
    if kind == "aws":
        from rotating_llm.secrets.aws import AWSSecretStore

        return AWSSecretStore.from_settings(settings)
    raise ConfigError(f"SECRET_STORE_TYPE: unknown secret store {kind!r}")  # pragma: no cover


def test_secret_access(key_id: str, store: SecretStore | None = None) -> dict[str, Any]:  # noqa: PT028
    """Report whether ``key_id``'s secret can be read: store, location, found, cache age.

    The value itself is never part of the report.
    """
    if store is None:
        from rotating_llm.keys._default import default_secret_store

        store = default_secret_store()
    return store.describe(key_id)


test_secret_access.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
