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

from rotating_llm._prefilter import MAY_HOLD_SECRET, may_hold_secret
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


#: Detectors look at no more than this many leading characters of one text (a bound on
#: the work per log record); registered secrets are masked in the whole text.
MAX_SCAN_CHARS = 64 * 1024


def _detect(text: str) -> str:
    if not may_hold_secret(text, MAX_SCAN_CHARS):
        return text
    head = text[:MAX_SCAN_CHARS]
    matches = find_secrets(head, honor_allow=False)
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


def redact(text: str) -> str:
    """``text`` with registered secrets and detector matches masked."""
    if not text:
        return text
    pattern = _registered_pattern()
    if pattern is not None:
        text = pattern.sub(MASK, text)
    return _detect(text)


_quick_search = MAY_HOLD_SECRET.search  # bound once: this runs for every log record


def _needs_redaction(text: str) -> bool:
    """Whether :func:`redact` would change ``text`` (cheap when it holds no candidate)."""
    pattern = _pattern if _pattern is not None or not _secrets else _registered_pattern()
    if pattern is not None and pattern.search(text) is not None:
        return True
    head = text if len(text) <= MAX_SCAN_CHARS else text[:MAX_SCAN_CHARS]
    if _quick_search(head) is None:
        return False
    return _detect(text) is not text


_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName", "_rotating_llm_redacted"}
)
_STAMP = "_rotating_llm_redacted"
_BASE_ATTR_COUNT = len(logging.LogRecord("", 0, "", 0, "", None, None).__dict__)


class _Masked:
    """Stands in for a log argument whose text held a secret: prints masked, either way."""

    __slots__ = ("_repr", "_str")

    def __init__(self, value: object) -> None:
        self._str = redact(str(value))
        self._repr = redact(repr(value))

    def __str__(self) -> str:
        return self._str

    def __repr__(self) -> str:
        return self._repr

    def __format__(self, spec: str) -> str:
        return format(self._str, spec)


def _mask_arg(value: Any) -> Any:
    """``value`` itself when it holds no secret; else a masked value of a printable kind."""
    if value is None or isinstance(value, (bool, int, float)):
        return value  # keeps %d / %f working; numbers carry no key
    if isinstance(value, str):
        return redact(value) if _needs_redaction(value) else value
    text = repr(value) if isinstance(value, (bytes, list, tuple, dict, set)) else str(value)
    return _Masked(value) if _needs_redaction(text) else value


def _mask_args(args: Any) -> Any:
    """``args`` with the same container type and length, each element masked."""
    if isinstance(args, tuple):
        masked = tuple(_mask_arg(a) for a in args)
        return args if all(m is a for m, a in zip(masked, args, strict=True)) else masked
    if isinstance(args, dict):
        changed = {k: _mask_arg(v) for k, v in args.items()}
        return args if all(changed[k] is v for k, v in args.items()) else changed
    return _mask_arg(args)


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Mask secrets in ``record`` in place, keeping the shape formatters rely on.

    ``msg`` stays the format string and ``args`` keeps its type and length (uvicorn's access
    formatter unpacks five of them): each argument that holds a secret is replaced by its
    masked text, numbers and clean values are left as they are. Only when a secret spans the
    format string and its arguments (a name in ``msg``, the value in ``args``) is the
    message formatted once and stored in ``msg`` with ``args`` emptied (same type). Extras,
    exception text and stack text are masked too; the work per record is bounded by
    :data:`MAX_SCAN_CHARS`. A record already redacted and unchanged since costs a lookup.
    """
    attrs = record.__dict__
    if len(attrs) > _BASE_ATTR_COUNT:  # a stamp, extras (set after creation), or both
        stamp = attrs.get(_STAMP)
        if len(attrs) - (stamp is not None) > _BASE_ATTR_COUNT:
            _redact_extras(attrs)
        if (
            stamp is not None
            and stamp[0] == _version
            and stamp[1] is record.msg
            and stamp[2] is record.args
        ):
            return record  # already redacted, and not changed since
    try:
        message = record.getMessage()
    except Exception:  # bad args: the formatter will report them; mask what is there
        message = None
    if message is None or _needs_redaction(message):
        _redact_message(record, message)
    if record.exc_info or record.exc_text or record.stack_info:
        _redact_traces(record)
    attrs[_STAMP] = (_version, record.msg, record.args)
    return record


def _redact_extras(attrs: dict[str, Any]) -> None:
    for name in attrs.keys() - _STANDARD_ATTRS:
        value = attrs[name]
        if isinstance(value, str) and _needs_redaction(value):
            attrs[name] = redact(value)


def _redact_traces(record: logging.LogRecord) -> None:
    if record.exc_info and record.exc_info[0] is not None:
        text = record.exc_text or logging.Formatter().formatException(record.exc_info)
        if _needs_redaction(text):
            record.exc_text = redact(text)
            record.exc_info = None  # the exception object itself carries the secret
    elif record.exc_text and _needs_redaction(record.exc_text):
        record.exc_text = redact(record.exc_text)
    if record.stack_info and _needs_redaction(record.stack_info):
        record.stack_info = redact(record.stack_info)


def _redact_message(record: logging.LogRecord, message: str | None) -> None:
    msg = record.msg
    if isinstance(msg, str):
        record.msg = redact(msg) if _needs_redaction(msg) else msg
    elif isinstance(msg, dict):  # structlog's stdlib bridge: the event dict stays a dict
        record.msg = _mask_args(msg)
    else:
        record.msg = _mask_arg(msg)
    if record.args:
        record.args = _mask_args(record.args)
    if message is None:
        return
    try:
        again = record.getMessage()
    except Exception:
        again = ""
    if _needs_redaction(again):  # the secret spans msg and args: format once
        record.msg = redact(message)
        record.args = type(record.args)() if isinstance(record.args, (tuple, dict)) else ()


class RedactingFilter(logging.Filter):
    """A handler (or logger) filter that masks secrets in every record; never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place and let it through."""
        attrs = record.__dict__
        stamp = attrs.get(_STAMP)
        if (  # the common case, redacted at creation: checked here without a call
            stamp is None
            or len(attrs) != _BASE_ATTR_COUNT + 1
            or stamp[0] != _version
            or stamp[1] is not record.msg
            or stamp[2] is not record.args
        ):
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
