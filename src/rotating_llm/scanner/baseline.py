"""Baselines: known findings (by file, detector and fingerprint) that a scan does not report."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable

    from rotating_llm.scanner.core import Finding

__all__ = ["BaselineError", "filter_new", "load_baseline", "write_baseline"]

_VERSION = 1


class BaselineError(ValueError):
    """A baseline file is missing or malformed."""


def _key(file: str, detector: str, fp: str) -> tuple[str, str, str]:
    return (Path(file).as_posix(), detector, fp)


def load_baseline(path: str | os.PathLike[str]) -> set[tuple[str, str, str]]:
    """The (file, detector, fingerprint) triples recorded in a baseline file.

    Raises:
        BaselineError: the file cannot be read or is not a baseline.
    """
    try:
        data: Any = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise BaselineError(f"cannot read baseline {os.fspath(path)!r}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise BaselineError(f"baseline {os.fspath(path)!r} is not JSON: {exc.msg}") from None
    entries = data.get("findings") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise BaselineError(f"baseline {os.fspath(path)!r} has no 'findings' list")
    known: set[tuple[str, str, str]] = set()
    for entry in entries:
        if isinstance(entry, dict) and {"file", "detector", "fingerprint"} <= entry.keys():
            known.add(_key(str(entry["file"]), str(entry["detector"]), str(entry["fingerprint"])))
    return known


def write_baseline(path: str | os.PathLike[str], findings: Iterable[Finding]) -> int:
    """Record ``findings`` (no values, only fingerprints) as the new baseline; returns the count."""
    rows = sorted({(Path(f.file).as_posix(), f.detector, f.fingerprint, f.line) for f in findings})
    payload = {
        "version": _VERSION,
        "generated_by": "rotating-llm scan",
        "findings": [
            {"file": file, "detector": det, "fingerprint": fp, "line": line}
            for file, det, fp, line in rows
        ],
    }
    Path(path).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return len(rows)


def filter_new(findings: Iterable[Finding], known: set[tuple[str, str, str]]) -> list[Finding]:
    """The findings not in the baseline (line numbers may have moved; they do not matter)."""
    return [f for f in findings if _key(f.file, f.detector, f.fingerprint) not in known]
