"""Scanning texts and files into :class:`Finding` records (values redacted, never whole)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rotating_llm.scanner.detectors import find_secrets
from rotating_llm.scanner.walk import WalkStats, iter_files, read_text

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["Finding", "ScanResult", "scan_paths", "scan_text"]


@dataclass(frozen=True)
class Finding:
    """One secret found: where, which detector, the redacted value and a one-way fingerprint.

    The plain value is never kept.
    """

    file: str
    line: int
    column: int
    detector: str
    redacted: str
    fingerprint: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass
class ScanResult:
    """Findings plus what was read and skipped."""

    findings: list[Finding]
    stats: WalkStats


def scan_text(text: str, file: str = "<text>") -> list[Finding]:
    """The findings in ``text`` (as if read from ``file``)."""
    return [
        Finding(file, m.line, m.column, m.detector, m.redacted, m.fingerprint)
        for m in find_secrets(text)
    ]


def _display(path: Path) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:  # pragma: no cover - another drive on Windows
        rel = str(path)
    return Path(rel).as_posix() if not rel.startswith("..") else path.as_posix()


def scan_paths(
    paths: Iterable[str | os.PathLike[str]], *, exclude: Iterable[str] = ()
) -> ScanResult:
    """Scan files and directories; binary files and ``.git`` are skipped.

    Args:
        paths: files and directories.
        exclude: glob patterns of files to skip.
    """
    stats = WalkStats()
    findings: list[Finding] = []
    for path in iter_files(paths, exclude=exclude, stats=stats):
        text = read_text(path, stats)
        if text is None:
            continue
        findings.extend(scan_text(text, _display(path)))
    return ScanResult(findings, stats)
