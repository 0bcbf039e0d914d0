"""Which files a scan reads: directories walked, VCS and cache folders and binaries skipped."""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

__all__ = ["DEFAULT_EXCLUDED_DIRS", "MAX_FILE_BYTES", "WalkStats", "iter_files", "read_text"]

#: Directories never entered (and files under them never read, even if named explicitly).
DEFAULT_EXCLUDED_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "__pycache__",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
        ".tox",
        ".nox",
        ".venv",
        "node_modules",
    }
)
#: Files larger than this are skipped.
MAX_FILE_BYTES = 20 * 1024 * 1024
_BINARY_SUFFIXES = frozenset(
    {
        ".png",
        ".jpg",
        ".jpeg",
        ".gif",
        ".bmp",
        ".ico",
        ".webp",
        ".pdf",
        ".zip",
        ".gz",
        ".tgz",
        ".bz2",
        ".xz",
        ".7z",
        ".tar",
        ".whl",
        ".egg",
        ".so",
        ".dll",
        ".dylib",
        ".exe",
        ".bin",
        ".o",
        ".a",
        ".pyc",
        ".pyo",
        ".class",
        ".jar",
        ".woff",
        ".woff2",
        ".ttf",
        ".otf",
        ".mp3",
        ".mp4",
        ".wav",
        ".avi",
        ".mov",
        ".sqlite",
        ".db",
        ".parquet",
        ".npy",
        ".npz",
        ".pt",
        ".safetensors",
        ".onnx",
    }
)
_SNIFF_BYTES = 8192


@dataclass
class WalkStats:
    """Counts of what a scan read and skipped."""

    files_scanned: int = 0
    skipped_binary: int = 0
    skipped_large: int = 0
    skipped_excluded: int = 0
    errors: list[str] = field(default_factory=list)


def _excluded(path: Path, excluded_dirs: frozenset[str], patterns: tuple[str, ...]) -> bool:
    if any(part in excluded_dirs for part in path.parts[:-1]):
        return True
    posix = path.as_posix()
    return any(fnmatch.fnmatch(posix, p) or fnmatch.fnmatch(path.name, p) for p in patterns)


def iter_files(
    paths: Iterable[str | os.PathLike[str]],
    *,
    exclude: Iterable[str] = (),
    excluded_dirs: frozenset[str] = DEFAULT_EXCLUDED_DIRS,
    stats: WalkStats | None = None,
) -> Iterator[Path]:
    """Regular files under ``paths`` (files or directories), sorted, without symlinks.

    Args:
        paths: files and directories to scan.
        exclude: glob patterns (matched against the path and the file name) to skip.
        excluded_dirs: directory names never entered.
        stats: counts skipped files when given.
    """
    stats = stats if stats is not None else WalkStats()
    patterns = tuple(exclude)
    seen: set[Path] = set()
    for raw in paths:
        root = Path(raw)
        if root.is_symlink() or not root.exists():
            if not root.exists():
                stats.errors.append(f"{root}: no such file or directory")
            continue
        if root.is_file():
            candidates: Iterable[Path] = [root]
        else:
            candidates = _walk_dir(root, excluded_dirs)
        for path in candidates:
            if path in seen:
                continue
            seen.add(path)
            if _excluded(path, excluded_dirs, patterns):
                stats.skipped_excluded += 1
                continue
            yield path


def _walk_dir(root: Path, excluded_dirs: frozenset[str]) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in excluded_dirs)
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if not path.is_symlink() and path.is_file():
                yield path


def read_text(path: Path, stats: WalkStats | None = None) -> str | None:
    """The content of ``path`` as text, or ``None`` for a binary, too large or unreadable file.

    Notebooks, JSON and every other text format are read as plain text.
    """
    stats = stats if stats is not None else WalkStats()
    if path.suffix.lower() in _BINARY_SUFFIXES:
        stats.skipped_binary += 1
        return None
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            stats.skipped_large += 1
            return None
        data = path.read_bytes()
    except OSError as exc:
        stats.errors.append(f"{path}: {exc.strerror or type(exc).__name__}")
        return None
    if b"\x00" in data[:_SNIFF_BYTES]:
        stats.skipped_binary += 1
        return None
    stats.files_scanned += 1
    return data.decode("utf-8", errors="replace")
