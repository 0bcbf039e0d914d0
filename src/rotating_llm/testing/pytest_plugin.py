"""pytest plugin of rotating-llm: fixtures for the provider simulator.

Fixtures:
    fake_provider: a running :class:`~rotating_llm.testing.FakeProvider` without
        limits, one per test.
    fake_provider_factory: ``factory(**kwargs)`` starts a ``FakeProvider`` with those
        arguments; every provider it made is stopped after the test.

The module imports nothing heavy: aiohttp loads only when a fixture is used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from rotating_llm.testing._provider import FakeProvider

__all__ = ["fake_provider", "fake_provider_factory"]


@pytest.fixture
def fake_provider_factory() -> Iterator[Callable[..., FakeProvider]]:
    """Start ``FakeProvider(**kwargs)`` on demand; stop them all after the test."""
    from rotating_llm.testing._provider import FakeProvider

    started: list[FakeProvider] = []

    def factory(**kwargs: Any) -> FakeProvider:
        provider = FakeProvider(**kwargs).start()
        started.append(provider)
        return provider

    yield factory
    for provider in started:
        provider.stop()


@pytest.fixture
def fake_provider(
    fake_provider_factory: Callable[..., FakeProvider],
) -> FakeProvider:
    """A running ``FakeProvider`` without limits (any non-empty key is valid)."""
    return fake_provider_factory()
