"""``rotating-llm fake-provider``: run the provider simulator in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import sys

__all__ = ["configure_parser", "run"]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``fake-provider`` options to ``parser``."""
    parser.description = (
        "Serve a fake LLM provider (Gemini REST and OpenAI chat completions) with exact "
        "per-key limits, until Ctrl-C or SIGTERM. Stats: GET /_fake/stats."
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port, 0 for a free one")
    parser.add_argument("--rpm", type=_positive_int, help="requests per window per key")
    parser.add_argument("--tpm", type=_positive_int, help="tokens per window per key")
    parser.add_argument("--rpd", type=_positive_int, help="requests per day window per key")
    parser.add_argument(
        "--window", type=_positive_float, default=60.0, help="RPM/TPM window, seconds"
    )
    parser.add_argument(
        "--day-window", type=_positive_float, default=86_400.0, help="RPD window, seconds"
    )
    parser.add_argument(
        "--day-reset",
        metavar="TZ",
        help="reset RPD at midnight in this time zone (e.g. America/Los_Angeles) "
        "instead of a sliding --day-window",
    )
    parser.add_argument(
        "--keys", help="comma-separated allow-list of keys (default: any non-empty key)"
    )
    parser.add_argument(
        "--tpm-counts",
        choices=("input", "total"),
        default="input",
        help="what TPM charges: prompt tokens (default) or prompt + reply",
    )


def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C or SIGTERM; print the URL once listening. Return the exit code."""
    from rotating_llm.testing._runner import build_state, install_signal_handlers, serve_forever

    keys = [k.strip() for k in args.keys.split(",") if k.strip()] if args.keys else None
    config = {
        "rpm": args.rpm,
        "tpm": args.tpm,
        "rpd": args.rpd,
        "window": args.window,
        "day_window": args.day_window,
        "keys": keys,
        "tpm_counts": args.tpm_counts,
        "day_reset": args.day_reset,
    }
    try:
        state = build_state(config)
    except ValueError as exc:
        print(f"rotating-llm fake-provider: {exc}", file=sys.stderr)
        return 2
    host = str(args.host)

    def ready(port: int) -> None:
        shown = f"[{host}]" if ":" in host else host
        print(f"fake provider listening on http://{shown}:{port}", flush=True)

    async def main() -> None:
        stop = asyncio.Event()
        install_signal_handlers(stop)
        await serve_forever(state, host, int(args.port), ready, stop)

    try:
        asyncio.run(main())
    except OSError as exc:
        print(f"rotating-llm fake-provider: cannot listen: {exc}", file=sys.stderr)
        return 1
    return 0
