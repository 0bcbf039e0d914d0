"""Keep secrets out of logs: a registry of values to mask, ``redact``, a logging filter.

Every secret the library resolves is passed to :func:`register_secret`. :func:`redact`
masks those values and anything the secret scanner's detectors recognise.
:func:`install_redaction` puts a :class:`RedactingFilter` on every handler (existing and
future) and redacts each record as it is created, so a DEBUG line from httpx, botocore
or google-genai carrying a key never reaches a handler unmasked.
"""

from __future__ import annotations

import logging
import re
import threading
import weakref
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pydantic import SecretStr

from rotating_llm.scanner.detectors import find_secrets

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = [
    "MASK",
    "RedactingFilter",
    "clear_registered_secrets",
    "install_redaction",
    "redact",
    "redact_record",
    "register_secret",
    "registered_count",
    "uninstall_redaction",
    "unregister_secret",
]

#: What a registered secret is replaced with.
MASK = "[REDACTED]"
#: Values shorter than this are not registered (masking "abc" everywhere helps nobody).
MIN_SECRET_LENGTH = 8

_lock = threading.RLock()  # re-entrant: a finalizer may log while it is held
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None
_version = 0
_PRIVATE_KEY_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")


def _variants(value: str) -> Iterable[str]:
    yield value
    quoted = quote(value, safe="")
    if quoted != value:
        yield quoted


def register_secret(value: str | SecretStr | None) -> None:
    """Mask ``value`` (and its URL-encoded form) in every later :func:`redact` call."""
    global _pattern, _version
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if not value:
        return
    value = value.strip()
    if len(value) < MIN_SECRET_LENGTH:
        return
    with _lock:
        new = [v for v in _variants(value) if v not in _secrets]
        if new:
            _secrets.update(new)
            _pattern = None
            _version += 1


def unregister_secret(value: str | SecretStr) -> None:
    """Stop masking ``value`` specifically (detector matches are still masked)."""
    global _pattern, _version
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    with _lock:
        for v in _variants(value.strip()):
            _secrets.discard(v)
        _pattern = None
        _version += 1


def clear_registered_secrets() -> None:
    """Forget every registered value (for tests)."""
    global _pattern, _version
    with _lock:
        _secrets.clear()
        _pattern = None
        _version += 1


def registered_count() -> int:
    """How many values (with their encoded variants) are registered."""
    with _lock:
        return len(_secrets)


def _registered_pattern() -> re.Pattern[str] | None:
    """The compiled pattern of registered values, built outside the lock.

    Compiling can run a garbage collection whose finalizers log (langchain-google-genai's
    client cleanup does), and that log record comes straight back here: holding the lock
    while compiling deadlocked the thread.
    """
    global _pattern
    pattern = _pattern
    if pattern is not None or not _secrets:
        return pattern
    with _lock:
        version = _version
        alternatives = sorted(_secrets, key=len, reverse=True)  # longest first
    compiled = re.compile("|".join(re.escape(v) for v in alternatives))
    with _lock:
        if _version == version:
            _pattern = compiled
    return compiled


def redact(text: str) -> str:
    """``text`` with registered secrets and detector matches masked."""
    if not text:
        return text
    pattern = _registered_pattern()
    if pattern is not None:
        text = pattern.sub(MASK, text)
    matches = find_secrets(text, honor_allow=False)
    if not matches:
        return text
    out: list[str] = []
    pos = 0
    for m in matches:
        if m.start < pos:
            continue
        end = m.end
        if m.detector == "private-key":
            tail = _PRIVATE_KEY_END.search(text, m.end)
            end = tail.end() if tail is not None else len(text)
        out.append(text[pos : m.start])
        out.append(f"{m.value[: m.prefix_len]}…{MASK}" if m.prefix_len else MASK)
        pos = end
    out.append(text[pos:])
    return "".join(out)


_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName", "_rotating_llm_redacted"}
)
_STAMP = "_rotating_llm_redacted"


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Rewrite ``record`` in place so that its message, args, exception and extras are masked.

    The message is formatted once (``msg % args``), redacted, and stored as ``msg`` with
    ``args`` cleared. An exception whose text held a secret is replaced by its redacted text.
    """
    for name, value in list(record.__dict__.items()):  # extras may be set after creation
        if name not in _STANDARD_ATTRS and isinstance(value, str):
            record.__dict__[name] = redact(value)
    stamp = getattr(record, _STAMP, None)
    if stamp is not None and stamp[0] == _version and stamp[1] is record.msg and not record.args:
        return record  # already redacted, and not changed since
    try:
        message = record.getMessage()
    except Exception:  # bad args: keep both parts, masked
        message = f"{record.msg!s} {record.args!r}"
    record.msg = redact(message)
    record.args = None
    if record.exc_info and record.exc_info[0] is not None:
        text = record.exc_text or logging.Formatter().formatException(record.exc_info)
        clean = redact(text)
        record.exc_text = clean
        if clean != text:
            record.exc_info = None  # the exception object itself carries the secret
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    setattr(record, _STAMP, (_version, record.msg))
    return record


class RedactingFilter(logging.Filter):
    """A handler (or logger) filter that masks secrets in every record; never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place and let it through."""
        redact_record(record)
        return True


_FILTER = RedactingFilter()
_install_lock = threading.RLock()  # re-entrant: a finalizer may log while it is held
_orig_add_handler: Callable[[logging.Logger, logging.Handler], None] | None = None
_orig_factory: Callable[..., logging.LogRecord] | None = None


def _all_handlers() -> list[logging.Handler]:
    handlers: list[logging.Handler] = []
    for ref in list(getattr(logging, "_handlerList", [])):  # every handler ever created
        handler = ref() if isinstance(ref, weakref.ref) else None
        if isinstance(handler, logging.Handler):
            handlers.append(handler)
    loggers: list[Any] = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for lg in loggers:
        if isinstance(lg, logging.Logger):
            handlers.extend(lg.handlers)
    if logging.lastResort is not None:
        handlers.append(logging.lastResort)
    return handlers


def _attach(handler: logging.Handler) -> None:
    if _FILTER not in handler.filters:
        handler.addFilter(_FILTER)


def install_redaction(
    logger: logging.Logger | None = None, *, at_creation: bool = True
) -> RedactingFilter:
    """Mask secrets in every log record that reaches any handler.

    Attaches the shared :class:`RedactingFilter` to ``logger``'s handlers (the root logger
    by default), to every other existing handler, and to every handler added later with
    ``Logger.addHandler``. With ``at_creation`` the log record factory also redacts each
    record when it is made, which covers handlers that are called directly. Idempotent.

    Returns:
        The filter, e.g. to add to a handler built by hand.
    """
    global _orig_add_handler, _orig_factory
    with _install_lock:
        for handler in (logger or logging.getLogger()).handlers:
            _attach(handler)
        for handler in _all_handlers():
            _attach(handler)
        if _orig_add_handler is None:
            original_add = logging.Logger.addHandler
            _orig_add_handler = original_add

            def add_handler(self: logging.Logger, hdlr: logging.Handler) -> None:
                _attach(hdlr)
                original_add(self, hdlr)

            logging.Logger.addHandler = add_handler  # type: ignore[method-assign]
        if at_creation and _orig_factory is None:
            original_factory = logging.getLogRecordFactory()
            _orig_factory = original_factory

            def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
                return redact_record(original_factory(*args, **kwargs))

            logging.setLogRecordFactory(factory)
    return _FILTER


def uninstall_redaction() -> None:
    """Undo :func:`install_redaction`: remove the filter, restore ``addHandler`` and the factory."""
    global _orig_add_handler, _orig_factory
    with _install_lock:
        for handler in _all_handlers():
            handler.removeFilter(_FILTER)
        if _orig_add_handler is not None:
            logging.Logger.addHandler = _orig_add_handler  # type: ignore[method-assign,assignment]
            _orig_add_handler = None
        if _orig_factory is not None:
            logging.setLogRecordFactory(_orig_factory)
            _orig_factory = None
