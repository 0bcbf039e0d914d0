"""The secret scanner: ``rotating-llm scan`` and ``tools/secret_scanner.py``."""

from __future__ import annotations

from rotating_llm.scanner.core import Finding, ScanResult, scan_paths, scan_text
from rotating_llm.scanner.detectors import DETECTORS, Detector, find_secrets, redact_value

__all__ = [
    "DETECTORS",
    "Detector",
    "Finding",
    "ScanResult",
    "find_secrets",
    "redact_value",
    "scan_paths",
    "scan_text",
]
