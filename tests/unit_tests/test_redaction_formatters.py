"""Redaction keeps log records' shape: every common formatter still works, secrets masked."""

from __future__ import annotations

import io
import json
import logging
import random
import secrets
from collections.abc import Iterator

import pytest

from rotating_llm import redaction
from rotating_llm.redaction import (
    MASK,
    install_redaction,
    redact_record,
    register_secret,
    uninstall_redaction,
)
from rotating_llm.scanner.corpus import make_key


@pytest.fixture(autouse=True)
def installed() -> Iterator[None]:
    redaction.clear_registered_secrets()
    install_redaction()
    yield
    uninstall_redaction()
    redaction.clear_registered_secrets()


def _logger(name: str, formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream


def _errors(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().err


def test_clean_record_keeps_msg_and_args_objects() -> None:
    args = ("a", 3, 2.5, None)
    record = logging.LogRecord("h", logging.INFO, "f", 1, "x %s %d %f %s", args, None)
    redact_record(record)
    assert record.args is args
    assert record.msg == "x %s %d %f %s"


def test_secret_in_args_masked_inside_args() -> None:
    opaque = "opaque-" + secrets.token_hex(12)
    register_secret(opaque)
    record = logging.LogRecord("h", logging.INFO, "f", 1, "x %s %d %r", (opaque, 7, [opaque]), None)
    redact_record(record)
    assert isinstance(record.args, tuple) and len(record.args) == 3
    assert record.msg == "x %s %d %r"
    assert record.args[1] == 7
    assert opaque not in record.getMessage()
    assert record.getMessage().count(MASK) == 2


def test_percent_and_brace_styles(capsys: pytest.CaptureFixture[str]) -> None:
    key = make_key("google", random.Random())
    pct, pct_out = _logger("t.pct", logging.Formatter("%(levelname)s %(message)s"))
    brace, brace_out = _logger("t.brace", logging.Formatter("{levelname} {message}", style="{"))
    pct.info("calling %s with %s", "https://g.example/v1", key)
    pct.info("dict %(k)s", {"k": key})
    brace.warning("value %s", key)
    for out in (pct_out.getvalue(), brace_out.getvalue()):
        assert key not in out
        assert "AIza…" + MASK in out
    assert "dict AIza…" in pct_out.getvalue()
    assert "Logging error" not in _errors(capsys)


def test_uvicorn_access_and_default_formatters(capsys: pytest.CaptureFixture[str]) -> None:
    from uvicorn.logging import AccessFormatter, DefaultFormatter

    key = make_key("google", random.Random())
    access, access_out = _logger(
        "uvicorn.access.t",
        AccessFormatter('%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s'),
    )
    access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", "/v1/models", "1.1", 200)
    access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", f"/v1?key={key}", "1.1", 401)
    default, default_out = _logger(
        "uvicorn.error.t", DefaultFormatter("%(levelprefix)s %(message)s")
    )
    default.info("Started server process [%d] %s", 42, key)
    assert "Logging error" not in _errors(capsys)
    lines = access_out.getvalue().splitlines()
    assert '"GET /v1/models HTTP/1.1" 200' in lines[0]
    assert "401" in lines[1] and key not in lines[1] and MASK in lines[1]
    assert "Started server process [42]" in default_out.getvalue()
    assert key not in default_out.getvalue()


def test_structlog_stdlib_bridge(capsys: pytest.CaptureFixture[str]) -> None:
    import structlog

    key = make_key("openai-project", random.Random())
    formatter = structlog.stdlib.ProcessorFormatter(
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.JSONRenderer(),
        ],
        foreign_pre_chain=[structlog.stdlib.add_log_level],
    )
    std, out = _logger("t.structlog", formatter)
    slog = structlog.wrap_logger(
        std,
        processors=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
    )
    slog.info("calling provider", api_key=key, attempt=2)
    std.info("foreign %s", key)
    assert "Logging error" not in _errors(capsys)
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert events[0]["event"] == "calling provider"
    assert events[0]["attempt"] == 2  # the event dict stayed a dict, types kept
    assert key not in out.getvalue()
    assert events[1]["event"].startswith("foreign ")


def test_litellm_json_formatter(capsys: pytest.CaptureFixture[str]) -> None:
    from litellm._logging import JsonFormatter

    key = make_key("anthropic", random.Random())
    logger, out = _logger("t.litellm", JsonFormatter())
    logger.debug("request headers %s", {"x-api-key": key})
    logger.info("plain %s %s", "a", "b")
    assert "Logging error" not in _errors(capsys)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert key not in out.getvalue()
    assert records[1]["message"] == "plain a b"


def test_secret_split_between_msg_and_args_is_masked() -> None:
    value = "Zq8" + secrets.token_urlsafe(24).replace("-", "x").replace("_", "y")
    record = logging.LogRecord("h", logging.INFO, "f", 1, "service_api_token=%s", (value,), None)
    redact_record(record)
    assert value not in record.getMessage()
    assert isinstance(record.args, tuple)


def test_long_line_work_is_bounded() -> None:
    key = make_key("google", random.Random())
    line = "A" * (redaction.MAX_SCAN_CHARS * 4)
    record = logging.LogRecord("h", logging.INFO, "f", 1, "%s %s", (key, line), None)
    redact_record(record)
    assert key not in record.getMessage()  # within the head: masked
    assert len(record.getMessage()) < len(line) + 100
