"""``configure_logging``: level and rotating file from settings, redaction always on."""

from __future__ import annotations

import logging
import logging.handlers
from collections.abc import Iterator
from pathlib import Path

import pytest

from rotating_llm import ConfigError, Settings
from rotating_llm.logs import close_log_file, configure_logging, get_logger
from rotating_llm.redaction import register_secret, unregister_secret


@pytest.fixture
def restore_level() -> Iterator[None]:
    root = logging.getLogger("rotating_llm")
    level = root.level
    yield
    close_log_file()
    root.setLevel(level)


def test_loggers_live_under_rotating_llm() -> None:
    assert get_logger("router").name == "rotating_llm.router"
    assert get_logger("rotating_llm.keys").name == "rotating_llm.keys"
    assert get_logger("rotating_llm").name == "rotating_llm"


def test_level_and_file_from_the_environment(tmp_path: Path, restore_level: None) -> None:
    path = tmp_path / "logs" / "llm_router.log"
    env = {"ROTATING_LLM_LOG_FILE": str(path), "ROTATING_LLM_LOG_LEVEL": "debug"}
    settings = Settings.from_env(env)
    root = configure_logging(settings)
    assert root.level == logging.DEBUG
    files = [h for h in root.handlers if isinstance(h, logging.handlers.RotatingFileHandler)]
    assert len(files) == 1 and files[0].baseFilename == str(path.resolve())
    configure_logging(settings)  # idempotent: still one handler
    files = [h for h in root.handlers if isinstance(h, logging.handlers.RotatingFileHandler)]
    assert len(files) == 1
    secret = "sk-logs-test-0123456789abcdef0123456789"
    register_secret(secret)
    try:
        get_logger("router").debug("calling with key %s", secret)
    finally:
        unregister_secret(secret)
    close_log_file()
    text = path.read_text()
    assert "rotating_llm.router" in text and "calling with key" in text
    assert secret not in text
    assert not [h for h in root.handlers if isinstance(h, logging.handlers.RotatingFileHandler)]


def test_no_file_by_default_and_bad_levels(restore_level: None) -> None:
    root = configure_logging(Settings(), level="WARNING")
    assert root.level == logging.WARNING
    assert not [h for h in root.handlers if isinstance(h, logging.handlers.RotatingFileHandler)]
    with pytest.raises(ConfigError, match="ROTATING_LLM_LOG_LEVEL"):
        configure_logging(Settings(log_level="chatty"))
