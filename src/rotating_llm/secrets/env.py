"""The ``env`` secret store: ``API_KEY_<KEY_ID>`` (upper-cased, ``-`` and ``.`` as ``_``)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from rotating_llm.errors import SecretStoreError
from rotating_llm.secrets.base import SecretStore

__all__ = ["EnvSecretStore", "env_var_for"]

_NOT_WORD = re.compile(r"[^A-Za-z0-9_]")


def env_var_for(key_id: str) -> str:
    """The variable holding ``key_id``'s secret.

    ``gemini-flash-01`` -> ``API_KEY_GEMINI_FLASH_01``.
    """
    return "API_KEY_" + _NOT_WORD.sub("_", key_id).upper()


class EnvSecretStore(SecretStore):
    """Secrets from environment variables, as in the original design's Option A."""

    name = "env"

    def __init__(self, environ: Mapping[str, str] | None = None, cache_ttl: float = 300.0) -> None:
        super().__init__(cache_ttl=cache_ttl)
        self._environ = environ

    def location(self, key_id: str) -> str:
        return env_var_for(key_id)

    def _fetch(self, key_id: str) -> str:
        env = os.environ if self._environ is None else self._environ
        var = env_var_for(key_id)
        value = env.get(var)
        if value is None:
            raise SecretStoreError(
                f"Cannot retrieve secret for key {key_id!r}: environment variable {var} is not set",
                key_id=key_id,
                store=self.name,
            )
        return value
