"""Secrets out of exception graphs: what the library chains or re-raises holds no key.

SDK errors keep the request they failed on, and its headers hold the key
(``Authorization: Bearer sk-...``, ``x-goog-api-key``). The objects scrubbed here are
the library's own: the requests and responses of calls it made with a leased key.
"""

from __future__ import annotations

from typing import Any

__all__ = ["REDACTED", "scrub_exception"]

REDACTED = "***"
_MAX_NODES = 5000


def _clean(value: Any, secrets: tuple[str, ...]) -> Any:
    """A copy of an immutable ``value`` (str, bytes, tuple) without the secrets."""
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, bytes):
        for secret in secrets:
            value = value.replace(secret.encode(), REDACTED.encode())
        return value
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(_clean(v, secrets) for v in value)
    return value


def _changed(old: Any, new: Any) -> bool:
    return new is not old and new != old


def scrub_exception(exc: BaseException, secrets: list[str] | tuple[str, ...]) -> None:
    """Replace every occurrence of ``secrets`` reachable from ``exc``, in place.

    Walks ``__cause__``, ``__context__``, ``args`` and the attributes of every object
    reached (SDK errors keep ``request``, ``response``, their headers and streams),
    bounded in size. Only the library's own calls' objects are reached this way.
    """
    wanted = tuple(s for s in secrets if s)
    if not wanted:
        return
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo and len(seen) < _MAX_NODES:
        node = todo.pop()
        if node is None or id(node) in seen or isinstance(node, (str, bytes, int, float, type)):
            continue
        seen.add(id(node))
        if isinstance(node, BaseException):
            node.args = tuple(_clean(a, wanted) for a in node.args)
            todo += [*node.args, node.__cause__, node.__context__]
        if isinstance(node, dict):
            for key, value in list(node.items()):
                cleaned = _clean(value, wanted)
                if _changed(value, cleaned):
                    node[key] = cleaned
                todo.append(value)
            continue
        if isinstance(node, list):
            for i, value in enumerate(node):
                cleaned = _clean(value, wanted)
                if _changed(value, cleaned):
                    node[i] = cleaned
                todo.append(value)
            continue
        if isinstance(node, (tuple, set, frozenset)):
            todo.extend(node)
            continue
        headers = getattr(node, "headers", None)
        if headers is not None and not isinstance(headers, (list, dict)):
            _scrub_headers(headers, wanted)
        state = getattr(node, "__dict__", None)
        if not isinstance(state, dict):
            continue
        for name, value in list(state.items()):
            cleaned = _clean(value, wanted)
            if _changed(value, cleaned):
                try:
                    setattr(node, name, cleaned)
                except (AttributeError, TypeError):
                    state[name] = cleaned
            elif not callable(value) or isinstance(value, BaseException):
                todo.append(value)


def _scrub_headers(headers: Any, secrets: tuple[str, ...]) -> None:
    """Clean an httpx-style headers object (mapping with ``__setitem__``) in place."""
    try:
        items = list(headers.items())
    except (AttributeError, TypeError):
        return
    for name, value in items:
        cleaned = _clean(value, secrets)
        if _changed(value, cleaned):
            try:
                headers[name] = cleaned
            except (TypeError, KeyError):
                continue
