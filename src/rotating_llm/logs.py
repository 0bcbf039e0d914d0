"""Logging for operators: loggers under ``rotating_llm.*``, an optional rotating log file.

Every logger of the library is a child of ``rotating_llm`` (``rotating_llm.keys``,
``rotating_llm.router``, ...). :func:`configure_logging` sets that logger's level from
``ROTATING_LLM_LOG_LEVEL`` (default ``INFO``), adds a rotating file handler when
``ROTATING_LLM_LOG_FILE`` names a file (e.g. ``logs/llm_router.log``: 10 MB, 5 backups),
and always installs the secret redaction of :mod:`rotating_llm.redaction`.
"""

from __future__ import annotations

import logging
import logging.handlers
import threading

from rotating_llm.config import Settings
from rotating_llm.errors import ConfigError
from rotating_llm.redaction import install_redaction

__all__ = ["LOG_FORMAT", "ROOT_LOGGER", "close_log_file", "configure_logging", "get_logger"]

#: The parent of every logger of the library.
ROOT_LOGGER = "rotating_llm"
#: Format of the file handler's lines.
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"
#: Size of one log file before it rotates, and how many old files are kept.
MAX_BYTES = 10 * 1024 * 1024
BACKUP_COUNT = 5

_lock = threading.Lock()
_file_handler: logging.handlers.RotatingFileHandler | None = None


def get_logger(name: str) -> logging.Logger:
    """The logger ``rotating_llm.<name>`` (``name`` may already start with it)."""
    if name == ROOT_LOGGER or name.startswith(ROOT_LOGGER + "."):
        return logging.getLogger(name)
    return logging.getLogger(f"{ROOT_LOGGER}.{name}")


def _level(value: str) -> int:
    level = logging.getLevelName(value.strip().upper())
    if not isinstance(level, int):
        raise ConfigError(f"ROTATING_LLM_LOG_LEVEL: unknown level {value!r}")
    return level


def configure_logging(
    settings: Settings | None = None, *, level: str | int | None = None
) -> logging.Logger:
    """Set up the ``rotating_llm`` logger; return it. Idempotent.

    Args:
        settings: Default :meth:`Settings.from_env` (``log_level``, ``log_file``).
        level: Overrides ``settings.log_level``.

    The file handler (when ``log_file`` is set) is created once, with its directory,
    and replaced when a later call names another file. Redaction is always installed,
    also when ``ROTATING_LLM_REDACT_LOGS`` is off: a log file must never hold a secret.

    Raises:
        ConfigError: the level is unknown.
    """
    global _file_handler
    settings = settings or Settings.from_env()
    chosen = settings.log_level if level is None else level
    numeric = chosen if isinstance(chosen, int) else _level(chosen)
    root = logging.getLogger(ROOT_LOGGER)
    with _lock:
        root.setLevel(numeric)
        path = settings.log_file
        current = _file_handler
        if current is not None and (path is None or current.baseFilename != str(path.resolve())):
            root.removeHandler(current)
            current.close()
            _file_handler = current = None
        if path is not None and current is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.handlers.RotatingFileHandler(
                path, maxBytes=MAX_BYTES, backupCount=BACKUP_COUNT, encoding="utf-8"
            )
            handler.setFormatter(logging.Formatter(LOG_FORMAT))
            root.addHandler(handler)
            _file_handler = handler
    install_redaction(root)
    return root


def close_log_file() -> None:
    """Remove and close the file handler :func:`configure_logging` added, if any."""
    global _file_handler
    with _lock:
        if _file_handler is not None:
            logging.getLogger(ROOT_LOGGER).removeHandler(_file_handler)
            _file_handler.close()
            _file_handler = None
