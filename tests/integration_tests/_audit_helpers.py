"""Helpers of the secret audit: every logger at DEBUG, a Redis dump, a search for values.

A finding is reported by channel and by a label of the secret (never the value itself),
so a failing audit does not print the secrets it found.
"""

from __future__ import annotations

import io
import logging
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

__all__ = [
    "Evidence",
    "debug_everything",
    "files_under",
    "find_leaks",
    "raise_every_logger_to_debug",
    "redis_dump",
]

#: Loggers of the libraries a workload goes through, named even before they exist.
THIRD_PARTY_LOGGERS = (
    "httpx",
    "httpcore",
    "google_genai",
    "google.genai",
    "openai",
    "urllib3",
    "requests",
    "botocore",
    "boto3",
    "hvac",
    "aiohttp",
    "redis",
    "asyncio",
    "langchain",
    "langchain_core",
    "langchain_google_genai",
    "langchain_openai",
    "langsmith",
    "rotating_llm",
)


def _import_sdks() -> None:
    """Import the SDKs so their loggers are in ``loggerDict`` before levels are set."""
    import botocore.session  # noqa: F401
    import google.genai  # noqa: F401
    import httpcore  # noqa: F401
    import httpx  # noqa: F401
    import hvac  # noqa: F401
    import langchain_google_genai  # noqa: F401
    import langchain_openai  # noqa: F401
    import openai  # noqa: F401
    import urllib3  # noqa: F401


@contextmanager
def debug_everything(log_file: Path) -> Iterator[io.StringIO]:
    """Root and every known logger at DEBUG, records captured in memory and in ``log_file``.

    Loggers that do not propagate get the handlers too. Levels, handlers and propagation
    are restored on exit.
    """
    _import_sdks()
    buf = io.StringIO()
    fmt = logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s")
    handlers: list[logging.Handler] = [
        logging.StreamHandler(buf),
        logging.FileHandler(log_file, encoding="utf-8"),
    ]
    for h in handlers:
        h.setLevel(logging.DEBUG)
        h.setFormatter(fmt)
    root = logging.getLogger()
    saved_root = root.level
    names = set(logging.root.manager.loggerDict) | set(THIRD_PARTY_LOGGERS)
    saved: dict[str, int] = {}
    extra: list[logging.Logger] = []
    for name in sorted(names):
        lg = logging.getLogger(name)
        saved[name] = lg.level
        lg.setLevel(logging.DEBUG)
        if not lg.propagate:
            extra.append(lg)
    for h in handlers:
        root.addHandler(h)
        for lg in extra:
            lg.addHandler(h)
    root.setLevel(logging.DEBUG)
    try:
        yield buf
    finally:
        for h in handlers:
            root.removeHandler(h)
            for lg in extra:
                lg.removeHandler(h)
            h.close()
        root.setLevel(saved_root)
        for name in list(logging.root.manager.loggerDict):
            lg = logging.getLogger(name)
            if isinstance(lg, logging.Logger):  # loggers made meanwhile were NOTSET
                lg.setLevel(saved.get(name, logging.NOTSET))


def raise_every_logger_to_debug() -> None:
    """Loggers made since :func:`debug_everything` started, at DEBUG explicitly too."""
    for name in list(logging.root.manager.loggerDict):
        lg = logging.getLogger(name)
        if lg.level == logging.NOTSET or lg.level > logging.DEBUG:
            lg.setLevel(logging.DEBUG)


def exception_texts(exc: BaseException) -> list[str]:
    """``str``, ``repr`` and the formatted traceback of ``exc`` and of its whole chain."""
    out: list[str] = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        out += [str(e), repr(e), repr(getattr(e, "args", ()))]
        for attr in ("body", "response", "message", "details", "reasons"):
            value = getattr(e, attr, None)
            if value is not None:
                out.append(repr(value))
        todo += [e.__cause__, e.__context__]
    return out


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, (list, tuple, set)):
        return "\n".join(_text(v) for v in value)
    if isinstance(value, dict):
        return "\n".join(f"{_text(k)}={_text(v)}" for k, v in value.items())
    return str(value)


def redis_dump(url: str, prefix: str) -> tuple[int, str]:
    """``(number of keys, text)`` of every key under ``prefix``: names and values, all types."""
    r = redis.Redis.from_url(url)
    parts: list[str] = []
    count = 0
    try:
        for key in r.scan_iter(match=f"{prefix}*", count=1000):
            count += 1
            kind = r.type(key).decode()
            value: Any
            if kind == "string":
                value = r.get(key)
            elif kind == "hash":
                value = r.hgetall(key)
            elif kind == "list":
                value = r.lrange(key, 0, -1)
            elif kind == "set":
                value = r.smembers(key)
            elif kind == "zset":
                value = [(m, s) for m, s in r.zrange(key, 0, -1, withscores=True)]
            elif kind == "stream":
                value = r.xrange(key)
            else:
                value = r.dump(key)
            parts.append(f"{_text(key)} ({kind}): {_text(value)}")
    finally:
        r.close()
    return count, "\n".join(parts)


def files_under(root: Path) -> dict[str, str]:
    """Every regular file under ``root`` (its text, bytes decoded leniently)."""
    return {
        str(p.relative_to(root)): p.read_bytes().decode("utf-8", errors="replace")
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@dataclass
class Evidence:
    """Text gathered per channel (logs, exceptions, reprs, ...), searched at the end."""

    channels: dict[str, list[str]] = field(default_factory=dict)

    def add(self, channel: str, *texts: Any) -> None:
        self.channels.setdefault(channel, []).extend(_text(t) for t in texts)

    def add_exception(self, channel: str, exc: BaseException) -> None:
        self.add(channel, *exception_texts(exc))

    def text(self, channel: str) -> str:
        return "\n".join(self.channels.get(channel, []))


def find_leaks(secrets: Mapping[str, str], evidence: Evidence) -> dict[str, list[str]]:
    """``{channel: [labels]}`` of every secret found whole or in part.

    Besides the whole value, 16-character slices of it are searched for, starting every
    4 characters (so any 19 consecutive characters of a secret are noticed).
    """
    found: dict[str, list[str]] = {}
    for channel in evidence.channels:
        text = evidence.text(channel)
        for label, value in secrets.items():
            assert len(value) >= 24, label
            slices = [value[i : i + 16] for i in range(0, len(value) - 15, 4)]
            if value in text or value[8:24] in text or any(s in text for s in slices):
                found.setdefault(channel, []).append(label)
    return found
