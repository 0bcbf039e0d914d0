"""Loading and saving ``keys.json``: all or nothing, clear errors."""

from __future__ import annotations

import difflib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from pydantic import BaseModel, ValidationError

from rotating_llm.errors import KeyFileError
from rotating_llm.keys._groups import group_problem, group_table
from rotating_llm.keys.models import APIKey, QuotaGroup, TenantCap

__all__ = [
    "KeysDocument",
    "load_keys_document",
    "load_keys_file",
    "parse_keys",
    "parse_keys_document",
    "save_keys_file",
]

_M = TypeVar("_M", bound=BaseModel)


class KeysDocument(NamedTuple):
    """A keys file's content: its keys, its quota groups and its tenants' caps."""

    keys: list[APIKey]
    quota_groups: list[QuotaGroup]
    tenants: tuple[TenantCap, ...] = ()


def parse_keys(data: Any, path: str = "<keys>") -> list[APIKey]:
    """Validate a decoded keys document ``{"keys": [...]}`` into ``APIKey`` objects.

    Raises:
        KeyFileError: naming the file, the entry and the field at fault.
    """
    return parse_keys_document(data, path).keys


def parse_keys_document(data: Any, path: str = "<keys>") -> KeysDocument:
    """Validate a decoded keys document ``{"keys": [...], "quota_groups": [...],
    "tenants": [...]}``.

    Raises:
        KeyFileError: naming the file, the entry (of ``keys``, ``quota_groups`` or
            ``tenants``) and the field at fault.
    """
    if not isinstance(data, dict):
        raise KeyFileError(
            f"top level must be an object with a 'keys' list, not {type(data).__name__}", path=path
        )
    unknown = sorted(set(data) - {"keys", "quota_groups", "tenants"})
    if unknown:
        raise KeyFileError(
            f"unknown top-level field(s) {unknown}; only 'keys', 'quota_groups' and "
            "'tenants' are allowed",
            path=path,
        )
    if "keys" not in data:
        raise KeyFileError("missing the 'keys' list", path=path, field="keys")
    entries = data["keys"]
    if not isinstance(entries, list):
        raise KeyFileError(
            f"'keys' must be a list, not {type(entries).__name__}", path=path, field="keys"
        )
    if not entries:
        raise KeyFileError(
            "the 'keys' list is empty; a pool needs at least one key", path=path, field="keys"
        )
    groups = _parse_groups(data.get("quota_groups", []), path)
    tenants = _parse_tenants(data.get("tenants", []), path)
    keys: list[APIKey] = []
    first_seen: dict[str, int] = {}
    for i, entry in enumerate(entries):
        key = _parse_entry(APIKey, entry, path, i, "key_id", "keys")
        if key.key_id in first_seen:
            raise KeyFileError(
                f"duplicate key_id (first at keys[{first_seen[key.key_id]}])",
                path=path,
                entry=i,
                key_id=key.key_id,
                field="key_id",
            )
        first_seen[key.key_id] = i
        keys.append(key)
    table, _ = group_table(groups)
    problem = group_problem(keys, table)
    if problem is not None:
        i, msg = problem
        raise KeyFileError(msg, path=path, entry=i, key_id=keys[i].key_id, field="quota_group")
    return KeysDocument(keys, groups, tenants)


def _parse_groups(entries: Any, path: str) -> list[QuotaGroup]:
    """The ``quota_groups`` list, validated (each entry, and no ``group_id`` twice)."""
    return _parse_unique(QuotaGroup, entries, path, "quota_groups", "group_id")


def _parse_tenants(entries: Any, path: str) -> tuple[TenantCap, ...]:
    """The ``tenants`` list of caps, validated (each entry, and no ``tenant`` twice)."""
    return tuple(_parse_unique(TenantCap, entries, path, "tenants", "tenant"))


def _parse_unique(model: type[_M], entries: Any, path: str, section: str, name: str) -> list[_M]:
    """The ``section`` list of ``model`` entries, each validated, none naming ``name`` twice."""
    if not isinstance(entries, list):
        raise KeyFileError(
            f"'{section}' must be a list, not {type(entries).__name__}", path=path, field=section
        )
    out: list[_M] = []
    first_seen: dict[str, int] = {}
    for j, entry in enumerate(entries):
        item = _parse_entry(model, entry, path, j, name, section)
        ident = str(getattr(item, name))
        if ident in first_seen:
            raise KeyFileError(
                f"duplicate {name} (first at {section}[{first_seen[ident]}])",
                path=path,
                entry=j,
                key_id=ident,
                field=name,
                section=section,
            )
        first_seen[ident] = j
        out.append(item)
    return out


def _parse_entry(
    model: type[_M], entry: Any, path: str, index: int, id_field: str, section: str
) -> _M:
    """One entry of ``section`` as ``model``, or a ``KeyFileError`` naming its field."""
    ident = entry.get(id_field) if isinstance(entry, dict) else None
    label = ident if isinstance(ident, str) else None
    if not isinstance(entry, dict):
        raise KeyFileError(
            f"entry must be an object, not {type(entry).__name__}",
            path=path,
            entry=index,
            section=section,
        )
    _refuse_unknown_fields(model, entry, path, index, label, section)
    try:
        return model.model_validate(entry)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or None
        msg = err["msg"]
        if err["type"] == "missing":
            msg = "required field is missing"
        elif err["type"] == "extra_forbidden":
            msg = "unknown field"
        raise KeyFileError(
            msg, path=path, entry=index, key_id=label, field=field, section=section
        ) from None


def _refuse_unknown_fields(
    model: type[BaseModel],
    entry: dict[str, Any],
    path: str,
    index: int,
    label: str | None,
    section: str,
) -> None:
    """Name a misspelt field as the unknown field it is (before "missing ..." of its twin)."""
    known = list(model.model_fields)
    for name in entry:
        if name in known:
            continue
        close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise KeyFileError(
            f"unknown field {name!r}{hint}",
            path=path,
            entry=index,
            key_id=label,
            field=str(name),
            section=section,
        )


def load_keys_file(path: str | os.PathLike[str]) -> list[APIKey]:
    """Read and validate a keys file. Nothing is returned unless every entry is valid.

    Raises:
        KeyFileError: the file is missing, unreadable, not JSON, or has an invalid entry.
    """
    return load_keys_document(path).keys


def load_keys_document(path: str | os.PathLike[str]) -> KeysDocument:
    """Read and validate a keys file: its keys and quota groups, all valid or an error.

    Raises:
        KeyFileError: the file is missing, unreadable, not JSON, or has an invalid entry.
    """
    p = Path(path)
    name = str(p)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyFileError("file not found", path=name) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read the file ({type(exc).__name__})", path=name) from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise KeyFileError("JSON nested too deeply to be a keys file", path=name) from None
    except json.JSONDecodeError as exc:
        raise KeyFileError(
            f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", path=name
        ) from None
    return parse_keys_document(data, name)


def save_keys_file(
    path: str | os.PathLike[str],
    keys: Sequence[APIKey],
    quota_groups: Sequence[QuotaGroup] = (),
    tenants: Sequence[TenantCap] = (),
) -> None:
    """Write ``keys`` (and ``quota_groups``, ``tenants``) to ``path`` atomically (a
    temporary file renamed over it)."""
    p = Path(path)
    doc: dict[str, list[dict[str, Any]]] = {
        "keys": [k.model_dump(mode="json", exclude_defaults=True, exclude_none=True) for k in keys]
    }
    if quota_groups:
        doc["quota_groups"] = [g.model_dump(mode="json", exclude_none=True) for g in quota_groups]
    if tenants:
        doc["tenants"] = [t.model_dump(mode="json", exclude_none=True) for t in tenants]
    for entry, key in zip(doc["keys"], keys, strict=True):
        entry.setdefault("key_id", key.key_id)
        entry["active"] = key.active
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
