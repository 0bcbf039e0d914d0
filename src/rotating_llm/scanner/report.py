"""Scan reports: text for people, JSON for scripts, SARIF 2.1.0 for code-scanning tools."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from rotating_llm.scanner.detectors import DETECTORS

if TYPE_CHECKING:
    from collections.abc import Sequence

    from rotating_llm.scanner.core import Finding
    from rotating_llm.scanner.walk import WalkStats

__all__ = ["FORMATS", "format_report", "to_json", "to_sarif", "to_text"]

FORMATS = ("text", "json", "sarif")
_TOOL = "rotating-llm-scan"
_SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def to_text(findings: Sequence[Finding], stats: WalkStats) -> str:
    """``file:line:col: detector: redacted`` lines and a summary."""
    lines = [f"{f.file}:{f.line}:{f.column}: {f.detector}: {f.redacted}" for f in findings]
    lines.extend(f"warning: {err}" for err in stats.errors)
    noun = "secret" if len(findings) == 1 else "secrets"
    lines.append(
        f"{len(findings)} {noun} found in {stats.files_scanned} files scanned "
        f"({stats.skipped_binary} binary, {stats.skipped_large} too large, "
        f"{stats.skipped_excluded} excluded skipped)"
    )
    return "\n".join(lines) + "\n"


def to_json(findings: Sequence[Finding], stats: WalkStats) -> str:
    """A JSON document: ``findings`` plus counts."""
    doc = {
        "version": 1,
        "tool": _TOOL,
        "findings": [f.to_dict() for f in findings],
        "files_scanned": stats.files_scanned,
        "skipped_binary": stats.skipped_binary,
        "skipped_large": stats.skipped_large,
        "skipped_excluded": stats.skipped_excluded,
        "errors": stats.errors,
    }
    return json.dumps(doc, indent=2) + "\n"


def to_sarif(findings: Sequence[Finding], stats: WalkStats) -> str:
    """A SARIF 2.1.0 log with one run, one rule per detector and one result per finding."""
    rules = [
        {
            "id": det.name,
            "name": det.name.title().replace("-", ""),
            "shortDescription": {"text": det.description},
            "defaultConfiguration": {"level": "error"},
        }
        for det in DETECTORS
    ]
    index = {det.name: i for i, det in enumerate(DETECTORS)}
    results: list[dict[str, Any]] = []
    for f in findings:
        results.append(
            {
                "ruleId": f.detector,
                "ruleIndex": index.get(f.detector, 0),
                "level": "error",
                "message": {"text": f"Possible {f.detector} found: {f.redacted}"},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": {"uri": quote(f.file)},
                            "region": {"startLine": f.line, "startColumn": f.column},
                        }
                    }
                ],
                "partialFingerprints": {"secretFingerprint/v1": f.fingerprint},
            }
        )
    doc = {
        "$schema": _SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": {"name": _TOOL, "rules": rules}},
                "results": results,
                "invocations": [
                    {
                        "executionSuccessful": True,
                        "toolExecutionNotifications": [
                            {"level": "warning", "message": {"text": err}} for err in stats.errors
                        ],
                    }
                ],
            }
        ],
    }
    return json.dumps(doc, indent=2) + "\n"


def format_report(fmt: str, findings: Sequence[Finding], stats: WalkStats) -> str:
    """The report in ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "json":
        return to_json(findings, stats)
    if fmt == "sarif":
        return to_sarif(findings, stats)
    return to_text(findings, stats)
