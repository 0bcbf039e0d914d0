"""The values to mask and the masking of text: the registry behind :mod:`rotating_llm.redaction`.

:func:`register_secret` adds a value (and its URL-encoded form); :func:`redact` masks those
values and anything the secret scanner's detectors recognise; :func:`needs_redaction` says
cheaply whether :func:`redact` would change a text. ``pattern`` and ``version`` are read by
the log record path without a call: ``pattern`` is the compiled alternation of registered
values (``None`` until first needed), ``version`` changes with every registry change.
"""

from __future__ import annotations

import re
import threading
from typing import TYPE_CHECKING
from urllib.parse import quote

from pydantic import SecretStr

from rotating_llm._prefilter import MAY_HOLD_SECRET, may_hold_secret
from rotating_llm.scanner.detectors import find_secrets

if TYPE_CHECKING:
    from collections.abc import Iterable

#: What a registered secret is replaced with.
MASK = "[REDACTED]"
#: Values shorter than this are not registered (masking "abc" everywhere helps nobody).
MIN_SECRET_LENGTH = 8
#: Detectors look at no more than this many leading characters of one text (a bound on
#: the work per log record); registered secrets are masked in the whole text.
MAX_SCAN_CHARS = 64 * 1024

lock = threading.RLock()  # re-entrant: a finalizer may log while it is held
values: set[str] = set()
pattern: re.Pattern[str] | None = None
version = 0
_PRIVATE_KEY_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")


def _variants(value: str) -> Iterable[str]:
    yield value
    quoted = quote(value, safe="")
    if quoted != value:
        yield quoted


def register_secret(value: str | SecretStr | None) -> None:
    """Mask ``value`` (and its URL-encoded form) in every later :func:`redact` call."""
    global pattern, version
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if not value:
        return
    value = value.strip()
    if len(value) < MIN_SECRET_LENGTH:
        return
    with lock:
        new = [v for v in _variants(value) if v not in values]
        if new:
            values.update(new)
            pattern = None
            version += 1


def unregister_secret(value: str | SecretStr) -> None:
    """Stop masking ``value`` specifically (detector matches are still masked)."""
    global pattern, version
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    with lock:
        for v in _variants(value.strip()):
            values.discard(v)
        pattern = None
        version += 1


def clear_registered_secrets() -> None:
    """Forget every registered value (for tests)."""
    global pattern, version
    with lock:
        values.clear()
        pattern = None
        version += 1


def registered_count() -> int:
    """How many values (with their encoded variants) are registered."""
    with lock:
        return len(values)


def registered_pattern() -> re.Pattern[str] | None:
    """The compiled pattern of registered values, built outside the lock.

    Compiling can run a garbage collection whose finalizers log (langchain-google-genai's
    client cleanup does), and that log record comes straight back here: holding the lock
    while compiling deadlocked the thread.
    """
    global pattern
    current = pattern
    if current is not None or not values:
        return current
    with lock:
        seen = version
        alternatives = sorted(values, key=len, reverse=True)  # longest first
    compiled = re.compile("|".join(re.escape(v) for v in alternatives))
    with lock:
        if version == seen:
            pattern = compiled
    return compiled


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
    registered = registered_pattern()
    if registered is not None:
        text = registered.sub(MASK, text)
    return _detect(text)


#: The quick test, bound once: it runs for every log record.
quick_search = MAY_HOLD_SECRET.search


def needs_redaction(text: str) -> bool:
    """Whether :func:`redact` would change ``text`` (cheap when it holds no candidate)."""
    registered = pattern if pattern is not None or not values else registered_pattern()
    if registered is not None and registered.search(text) is not None:
        return True
    head = text if len(text) <= MAX_SCAN_CHARS else text[:MAX_SCAN_CHARS]
    if quick_search(head) is None:
        return False
    return _detect(text) is not text
