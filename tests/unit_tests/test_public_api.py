"""The public surface: sorted ``__all__`` that matches what the package really exports."""

from __future__ import annotations

import subprocess
import sys

import pytest

import rotating_llm
import rotating_llm.errors


def test_all_is_sorted_and_complete() -> None:
    assert rotating_llm.__all__ == sorted(rotating_llm.__all__)
    for name in rotating_llm.__all__:
        assert hasattr(rotating_llm, name), name
    public = {n for n in vars(rotating_llm) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(rotating_llm, n)).__name__ == "module"}
    assert public - modules - {"annotations", "Any", "TYPE_CHECKING"} <= set(rotating_llm.__all__)
    assert set(rotating_llm.__all__) <= set(dir(rotating_llm))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        rotating_llm.nope  # noqa: B018


def test_seed_names_are_exported() -> None:
    for name in (
        "get_key_manager",
        "get_redis_limiter",
        "APIKey",
        "AllKeysExhaustedError",
        "test_secret_access",
        "get_request_router",
        "get_conversation_store",
        "get_rate_limiter",
        "count_actual_tokens",
    ):
        assert name in rotating_llm.__all__


def test_errors_module_lists_every_error() -> None:
    errs = rotating_llm.errors
    assert errs.__all__ == sorted(errs.__all__)
    for name in errs.__all__:
        cls = getattr(errs, name)
        assert issubclass(cls, errs.RotatingLLMError)
        assert name in (errs.__doc__ or ""), f"{name} missing from the hierarchy drawing"


@pytest.mark.multiprocess
def test_core_import_loads_no_framework_and_no_embedded_store() -> None:
    code = (
        "import sys; from rotating_llm import get_key_manager, APIKey, KeyManager; "
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('langchain_core', 'langchain', 'litellm', 'fakeredis', 'lupa', 'rich', 'aiohttp')]; "
        "print(','.join(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""


def test_a_store_timeout_is_a_refusal_the_faces_understand() -> None:
    """While Redis is up, a caller gets a lease or a refusal, never a bare store error:
    a slow Redis that decided nothing within the deadline is also AllKeysExhaustedError."""
    from rotating_llm import AllKeysExhaustedError, StoreTimeoutError, StoreUnavailableError

    exc = StoreTimeoutError("Redis at x is slow, not lost: no answer within 1s")
    assert isinstance(exc, StoreUnavailableError) and isinstance(exc, AllKeysExhaustedError)
    assert exc.retry_after == 1.0 and exc.reasons == {} and exc.model == ""
    assert str(exc) == "Redis at x is slow, not lost: no answer within 1s"
    assert StoreTimeoutError("m", model="pool", retry_after=0.5).retry_after == 0.5
