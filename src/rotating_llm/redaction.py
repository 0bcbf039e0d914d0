"""Keep secrets out of logs: a registry of values to mask, ``redact``, a logging filter.

Every secret the library resolves is passed to :func:`register_secret`. :func:`redact`
masks those values and anything the secret scanner's detectors recognise.
:func:`install_redaction` puts a :class:`RedactingFilter` on every handler (existing and
future) and redacts each record as it is created, so a DEBUG line from httpx, botocore
or google-genai carrying a key never reaches a handler unmasked.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any

from rotating_llm import _secret_registry as _registry
from rotating_llm._secret_registry import (
    MASK,
    MAX_SCAN_CHARS,
    MIN_SECRET_LENGTH,
    clear_registered_secrets,
    redact,
    register_secret,
    registered_count,
    unregister_secret,
)
from rotating_llm._secret_registry import needs_redaction as _needs_redaction

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "MASK",
    "MAX_SCAN_CHARS",
    "MIN_SECRET_LENGTH",
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

_lock = _registry.lock  # the registry's lock (a test holds it as a finalizer would)
_quick_search = _registry.quick_search
_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName", "_rotating_llm_redacted"}
)
_STAMP = "_rotating_llm_redacted"
_BASE_ATTR_COUNT = len(logging.LogRecord("", 0, "", 0, "", None, None).__dict__)
_STAMPED_ATTR_COUNT = _BASE_ATTR_COUNT + 1
_LogRecord = logging.LogRecord
_GET_MESSAGE = logging.LogRecord.getMessage


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
    version = _registry.version  # read first: a registration meanwhile makes it stale
    attrs = record.__dict__
    if len(attrs) > _BASE_ATTR_COUNT:  # a stamp, extras (set after creation), or both
        stamp = attrs.get(_STAMP)
        if len(attrs) - (stamp is not None) > _BASE_ATTR_COUNT:
            _redact_extras(attrs)
        if (
            stamp is not None
            and stamp[0] == version
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
    attrs[_STAMP] = (version, record.msg, record.args)
    return record


def _new_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
    """The record factory over the stdlib's: a ``LogRecord``, redacted, its clean case inline.

    With a ``str`` message and no exception or stack, the message is formatted as the
    stdlib's ``getMessage`` does, searched for registered values and put to the quick test,
    and the record is stamped; anything else, or a candidate, takes :func:`redact_record`.
    """
    record = _LogRecord(*args, **kwargs)
    version = _registry.version  # first: a registration after this makes the stamp stale
    registered = _registry.pattern
    msg = record.msg
    if (
        type(msg) is str
        and not record.exc_info
        and not record.stack_info
        and (registered is not None or not _registry.values)
        and _LogRecord.getMessage is _GET_MESSAGE
    ):
        margs = record.args
        try:
            message = msg % margs if margs else msg
        except Exception:  # bad args: redact_record masks what is there
            return redact_record(record)
        if (
            len(message) <= MAX_SCAN_CHARS
            and (registered is None or registered.search(message) is None)
            and _quick_search(message) is None
        ):
            record.__dict__[_STAMP] = (version, msg, margs)
            return record
    return redact_record(record)


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
            or len(attrs) != _STAMPED_ATTR_COUNT
            or stamp[0] != _registry.version
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

            # over the stdlib's own factory, the clean case needs no call
            plain = original_factory is _LogRecord
            logging.setLogRecordFactory(_new_record if plain else factory)
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
