"""LangChain's standard unit suite for ``RotatingChatModel`` (no network, embedded store)."""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_tests.unit_tests import ChatModelUnitTests

from rotating_llm import APIKey, KeyManager, Settings
from rotating_llm.langchain import RotatingChatModel
from rotating_llm.secrets import EnvSecretStore

_KEYS = [
    APIKey(key_id=f"u{i}", model_name="gemini-2.5-flash", provider="gemini", rpm=10, tpm=10_000)
    for i in range(2)
]
_MANAGER = KeyManager(
    _KEYS,
    settings=Settings(redis_url=None, key_prefix="unit:"),
    secret_store=EnvSecretStore({"API_KEY_U0": "sk-unit-0", "API_KEY_U1": "sk-unit-1"}),
)


class TestRotatingChatModelUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return RotatingChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": "gemini-2.5-flash", "key_manager": _MANAGER}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        """``keys`` as a file named by path; Redis and prefix from the environment."""
        return (
            {"ROTATING_LLM_KEY_PREFIX": "unitenv:", "ROTATING_LLM_MAX_WAIT": "7"},
            {"model": "gemini-2.5-flash", "keys": _KEYS, "redis_url": None},
            {"model": "gemini-2.5-flash", "max_attempts": 5},
        )


def test_init_from_env_reads_the_settings() -> None:
    """The model built by ``init_from_env_params`` took its settings from the environment."""
    import os
    from unittest import mock

    with mock.patch.dict(os.environ, {"ROTATING_LLM_MAX_WAIT": "7", "REDIS_URL": ""}):
        llm = RotatingChatModel(model="gemini-2.5-flash", keys=_KEYS)
    assert llm.manager.settings.max_wait == 7
    assert llm.manager.store.primary.is_embedded
