"""``rotating-llm scan PATH... [--fail-on-found] [--format text|json|sarif] [--baseline FILE]``."""

from __future__ import annotations

import argparse
import sys

from rotating_llm.scanner.baseline import BaselineError, filter_new, load_baseline, write_baseline
from rotating_llm.scanner.core import scan_paths
from rotating_llm.scanner.report import FORMATS, format_report

__all__ = ["configure_parser", "main", "run"]

#: Exit codes: no (new) findings, findings with --fail-on-found, usage or I/O error.
EXIT_OK, EXIT_FOUND, EXIT_ERROR = 0, 1, 2


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``scan`` arguments to ``parser``."""
    parser.add_argument("paths", nargs="+", metavar="PATH", help="files or directories to scan")
    parser.add_argument(
        "--fail-on-found",
        action="store_true",
        help="exit with status 1 when a secret (not in the baseline) is found",
    )
    parser.add_argument("--format", choices=FORMATS, default="text", help="report format")
    parser.add_argument(
        "--baseline",
        metavar="FILE",
        help="JSON file of known findings that are not reported (see --update-baseline)",
    )
    parser.add_argument(
        "--update-baseline",
        action="store_true",
        help="write every current finding to --baseline FILE and exit 0",
    )
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="skip files matching GLOB (repeatable)",
    )
    parser.add_argument("--output", "-o", metavar="FILE", help="write the report to FILE")


def run(args: argparse.Namespace) -> int:
    """Run a scan as ``args`` say; return the exit status (0, 1 on findings, 2 on error)."""
    if args.update_baseline and not args.baseline:
        print("error: --update-baseline needs --baseline FILE", file=sys.stderr)
        return EXIT_ERROR
    result = scan_paths(args.paths, exclude=args.exclude)
    findings = result.findings
    if args.baseline and args.update_baseline:
        count = write_baseline(args.baseline, findings)
        print(f"baseline {args.baseline}: {count} findings recorded", file=sys.stderr)
        return EXIT_OK
    if args.baseline:
        try:
            findings = filter_new(findings, load_baseline(args.baseline))
        except BaselineError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_ERROR
    report = format_report(args.format, findings, result.stats)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(report)
    else:
        sys.stdout.write(report)
    if result.stats.errors and not result.stats.files_scanned and not findings:
        return EXIT_ERROR
    return EXIT_FOUND if findings and args.fail_on_found else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m rotating_llm.scanner``)."""
    parser = argparse.ArgumentParser(
        prog="rotating-llm scan", description="Find API keys and other secrets in files."
    )
    configure_parser(parser)
    return run(parser.parse_args(argv))
