"""Garbage of the providers' SDK clients, collected where the tests that make it run.

These modules build google-genai, openai, LangChain and LiteLLM clients directly, as a
user would, and drop them without closing (LiteLLM also caches its own). Their sockets
would otherwise be collected whenever the garbage collector next runs, in some later
test, where ``filterwarnings = error`` turns the ResourceWarning into that test's
failure. Collected here, at the end of the module that made them, with that warning
ignored: it is about the SDKs' clients, not about the code under test.
"""

from __future__ import annotations

import gc
import warnings
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="module")
def collect_sdk_clients() -> Iterator[None]:
    """After the module: drop LiteLLM's cached clients and collect every dropped client."""
    yield
    import sys

    litellm = sys.modules.get("litellm")
    cache = getattr(litellm, "in_memory_llm_clients_cache", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        if cache is not None:
            cache.flush_cache()
        gc.collect()
