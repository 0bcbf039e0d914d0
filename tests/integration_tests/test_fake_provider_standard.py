"""LangChain's standard integration tests for ChatGoogleGenerativeAI pointed at FakeProvider."""

from __future__ import annotations

import gc
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from _sdk_clients import collect_sdk_clients  # noqa: F401 (an autouse fixture)
from langchain_core.language_models import BaseChatModel
from langchain_google_genai import ChatGoogleGenerativeAI
from langchain_tests.integration_tests import ChatModelIntegrationTests

from rotating_llm.testing import FakeProvider

# Client-side noise, not the simulator's: google-genai's async client subclasses
# aiohttp.ClientSession (deprecated by aiohttp) and never closes its aiohttp connection
# pool, whose sockets are then collected after pytest-asyncio closed their loop.
pytestmark = [
    pytest.mark.filterwarnings(
        "ignore:Inheritance class AiohttpClientSession from ClientSession:DeprecationWarning"
    ),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

_PROVIDER = FakeProvider()
_KEY = "fake-key-for-standard-tests"
_NEEDS_INTERNET = pytest.mark.xfail(
    reason="downloads its sample file (image/PDF/audio) from the internet, which is unavailable",
    run=False,
)


@pytest.fixture(scope="module", autouse=True)
def _running_provider() -> Iterator[FakeProvider]:
    with _PROVIDER:
        yield _PROVIDER
    # Collect the clients the suite leaked now, while their warnings are filtered.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


class TestChatGoogleGenerativeAIOnFakeProvider(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return ChatGoogleGenerativeAI

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {
            "model": "gemini-2.5-flash",
            "google_api_key": _KEY,
            "base_url": _PROVIDER.url,
            "max_retries": 0,
        }

    @property
    def supports_model_override(self) -> bool:
        # ChatGoogleGenerativeAI 4.x rejects invoke(..., model=...): pydantic says
        # "Extra inputs are not permitted" for GenerateContentConfig.model.
        return False

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def supports_image_inputs(self) -> bool:
        return True

    @property
    def supports_pdf_inputs(self) -> bool:
        return True

    @property
    def supports_audio_inputs(self) -> bool:
        return True

    @property
    def supports_image_tool_message(self) -> bool:
        return True

    @property
    def supports_pdf_tool_message(self) -> bool:
        return True

    @_NEEDS_INTERNET
    def test_image_inputs(self, model: BaseChatModel) -> None:
        super().test_image_inputs(model)

    @_NEEDS_INTERNET
    def test_pdf_inputs(self, model: BaseChatModel) -> None:
        super().test_pdf_inputs(model)

    @_NEEDS_INTERNET
    def test_audio_inputs(self, model: BaseChatModel) -> None:
        super().test_audio_inputs(model)

    @_NEEDS_INTERNET
    def test_image_tool_message(self, model: BaseChatModel) -> None:
        super().test_image_tool_message(model)

    @_NEEDS_INTERNET
    def test_pdf_tool_message(self, model: BaseChatModel) -> None:
        super().test_pdf_tool_message(model)


def test_the_standard_suite_really_reached_the_simulator() -> None:
    """The suite above ran against the simulator (runs last in this module)."""
    stats = _PROVIDER.key_stats(_KEY)
    assert stats.served > 20
    assert stats.rate_limited == 0
