"""Redaction: registered secrets and detector matches never reach a log handler unmasked."""

from __future__ import annotations

import io
import logging
import secrets
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from rotating_llm import redaction
from rotating_llm.redaction import (
    MASK,
    RedactingFilter,
    install_redaction,
    redact,
    register_secret,
    uninstall_redaction,
)
from rotating_llm.scanner.corpus import make_key

LIBRARY_LOGGERS = ("httpx", "httpcore.http11", "google_genai.models", "botocore.endpoint", "hvac")


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    redaction.clear_registered_secrets()
    yield
    uninstall_redaction()
    redaction.clear_registered_secrets()


def opaque_secret() -> str:
    """A secret no detector knows: only the registry can mask it."""
    return "opaque-" + secrets.token_hex(12)


def test_redact_registered_and_detected() -> None:
    import random

    opaque = opaque_secret()
    register_secret(SecretStr(opaque))
    gemini = make_key("google", random.Random(3))
    text = f"key={opaque} url=https://g.example/v1?key={gemini} quoted={opaque.replace('-', '%2D')}"
    out = redact(text)
    assert opaque not in out
    assert gemini not in out
    assert out.count(MASK) >= 2
    assert "AIza…" in out  # the fixed prefix stays as a hint
    assert redact("nothing to see") == "nothing to see"


def test_short_values_are_not_registered() -> None:
    register_secret("abc")
    register_secret(None)
    register_secret("")
    assert redaction.registered_count() == 0
    assert redact("abc abc") == "abc abc"


def test_private_key_block_masked_whole() -> None:
    import random

    block = make_key("private-key", random.Random(5))
    out = redact(f"loaded key:\n{block}\ndone")
    assert all(line not in out for line in block.splitlines()[1:-1])
    assert out.endswith("done")


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """A root handler at DEBUG writing to a string, installed before redaction."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old_level)


@pytest.fixture
def bare_library_loggers() -> Iterator[None]:
    """The library loggers as the libraries leave them: no filters or levels from other
    tests' imports (LiteLLM, once imported, filters and re-masks the httpx logger)."""
    saved = {}
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        saved[name] = (logger.filters[:], logger.level, logger.disabled)
        logger.filters.clear()
        logger.setLevel(logging.NOTSET)
        logger.disabled = False
    yield
    for name, (filters, level, disabled) in saved.items():
        logger = logging.getLogger(name)
        logger.filters[:] = filters
        logger.setLevel(level)
        logger.disabled = disabled


@pytest.mark.usefixtures("bare_library_loggers")
def test_library_loggers_at_debug_never_leak(captured: io.StringIO) -> None:
    secret = opaque_secret()
    register_secret(secret)
    records: list[logging.LogRecord] = []
    collector = logging.Handler()
    collector.emit = records.append  # type: ignore[method-assign]
    logging.getLogger().addHandler(collector)
    install_redaction()
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        logger.debug("request headers %r", [(b"x-goog-api-key", secret.encode())])
        logger.debug("url https://h/v1?key=%s", secret)
        logger.info(f"f-string with {secret}")
        logger.debug("extra", extra={"api_key": secret})
    try:
        raise ValueError(f"provider said: bad key {secret}")
    except ValueError:
        logging.getLogger("httpx").exception("request failed")
    logging.getLogger().removeHandler(collector)
    out = captured.getvalue()
    assert secret not in out
    assert out.count(MASK) == 3 * len(LIBRARY_LOGGERS) + 1
    extras = [r.api_key for r in records if hasattr(r, "api_key")]
    assert extras == [MASK] * len(LIBRARY_LOGGERS)
    assert all(secret not in str(r.__dict__) for r in records)
    assert "provider said: bad key" in out
    assert "Traceback" in out


def test_future_handler_and_child_logger_handler(captured: io.StringIO) -> None:
    secret = opaque_secret()
    install_redaction()
    register_secret(secret)  # registered after install: still masked
    child_stream = io.StringIO()
    child = logging.getLogger("google_genai.client")
    handler = logging.StreamHandler(child_stream)
    child.addHandler(handler)
    try:
        assert any(isinstance(f, RedactingFilter) for f in handler.filters)
        child.debug("sending %s", secret)
        child.warning("retrying with %s", SecretStr(secret).get_secret_value())
    finally:
        child.removeHandler(handler)
    assert secret not in child_stream.getvalue()
    assert secret not in captured.getvalue()
    assert child_stream.getvalue().count(MASK) == 2


def test_handler_called_directly_with_a_made_record() -> None:
    """A record built outside the factory (e.g. from a queue) is masked by the handler filter."""
    secret = opaque_secret()
    register_secret(secret)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    install_redaction()
    assert any(isinstance(f, RedactingFilter) for f in handler.filters)  # existing handler
    record = logging.makeLogRecord({"msg": "token %s", "args": (secret,), "levelno": 10})
    handler.handle(record)
    assert secret not in stream.getvalue()
    assert MASK in stream.getvalue()


def test_caplog_sees_redacted_records(caplog: pytest.LogCaptureFixture) -> None:
    secret = opaque_secret()
    register_secret(secret)
    install_redaction()
    with caplog.at_level(logging.DEBUG, logger="botocore.endpoint"):
        logging.getLogger("botocore.endpoint").debug("Making request with %s", secret)
    assert secret not in caplog.text
    assert caplog.records[-1].getMessage() == f"Making request with {MASK}"


def test_uninstall_restores_logging() -> None:
    factory = logging.getLogRecordFactory()
    add_handler = logging.Logger.addHandler
    install_redaction()
    install_redaction()  # idempotent
    assert logging.getLogRecordFactory() is not factory
    uninstall_redaction()
    assert logging.getLogRecordFactory() is factory
    assert logging.Logger.addHandler is add_handler


def test_logging_from_inside_a_registry_update_does_not_deadlock() -> None:
    """A finalizer that logs while the registry lock is held (GC during a compile) must not hang."""
    import threading

    from rotating_llm import redaction

    secret = "sk-deadlock-probe-0123456789abcdef"
    result: list[str] = []

    def scenario() -> None:
        redaction.register_secret(secret)
        with redaction._lock:  # as if a finalizer ran while the lock was held
            result.append(redaction.redact(f"token={secret}"))

    worker = threading.Thread(target=scenario, daemon=True)
    worker.start()
    worker.join(timeout=10)
    redaction.unregister_secret(secret)
    assert not worker.is_alive(), "redact() deadlocked on the registry lock"
    assert result and secret not in result[0]
