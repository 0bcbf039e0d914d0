"""``rotating-llm``: the demo, health, key status and control, the simulator, the scanner."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _keys_path(args: argparse.Namespace) -> Path:
    if args.keys:
        return Path(args.keys)
    return Path(os.environ.get("KEY_STORE_PATH") or "keys.json")


def _manager(args: argparse.Namespace) -> Any:
    from rotating_llm.keys import KeyManager

    return KeyManager(key_store_path=_keys_path(args), probe=False)


def _cmd_demo(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from rotating_llm._demo import run_demo

    result = run_demo(
        requests=args.requests,
        keys=args.pool_size,
        rpm=args.rpm,
        window=args.window,
        workers=args.workers,
        redis_url=args.redis_url,
        live=not args.no_live,
        to_stderr=args.json,
    )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0 if result.failed == 0 else 1
    table = Table(title="demo summary")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("requests", str(result.requests))
    table.add_row("served", str(result.served))
    table.add_row("failed", str(result.failed))
    table.add_row("provider 429s", str(result.provider_429s))
    table.add_row("waits for capacity", f"{result.waits} ({result.wait_seconds:.1f}s)")
    table.add_row("disabled by the provider's answer", ", ".join(result.disabled) or "-")
    table.add_row("seconds", f"{result.seconds:.1f}")
    for kid, n in sorted(result.per_key.items()):
        table.add_row(f"share of {kid}", f"{n} ({100 * n / max(1, result.served):.0f}%)")
    Console().print(table)
    return 0 if result.failed == 0 else 1


def health_report(args: argparse.Namespace) -> dict[str, Any]:
    """Healthy when the store answers, the keys load and one active key's secret resolves."""
    from rotating_llm.errors import RotatingLLMError

    try:
        km = _manager(args)
    except RotatingLLMError as exc:
        return {"healthy": False, "error": str(exc), "keys_file": str(_keys_path(args))}
    report: dict[str, Any] = km.health_check()
    report["keys_file"] = str(_keys_path(args))
    resolved = []
    for key in km.keys:
        if key.active and km.secret_store.describe(key.key_id)["found"]:
            resolved.append(key.key_id)
    report["secrets_resolved"] = resolved
    report["healthy"] = bool(report["healthy"] and resolved)
    km.close()
    return report


def _cmd_health(args: argparse.Namespace) -> int:
    report = health_report(args)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        from rich.console import Console

        colour = "green" if report["healthy"] else "red"
        Console().print(f"[{colour}]healthy: {report['healthy']}[/{colour}]")
        for k, v in report.items():
            if k != "healthy":
                Console().print(f"  {k}: {v}")
    return 0 if report["healthy"] else 1


def _cmd_keys(args: argparse.Namespace) -> int:
    from rotating_llm.errors import RotatingLLMError

    try:
        km = _manager(args)
        if args.action == "status":
            statuses = km.get_all_key_statuses(args.model)
            if args.json:
                print(json.dumps(statuses, indent=2, default=str))
            else:
                _print_statuses(statuses)
        elif args.action == "cooldown":
            km.mark_key_unhealthy(args.key, args.seconds, args.reason)
        elif args.action == "clear":
            km.clear_cooldown(args.key)
        elif args.action == "disable":
            km.disable_key(args.key, args.reason)
        elif args.action == "enable":
            km.enable_key(args.key)
    except RotatingLLMError as exc:
        print(f"rotating-llm: {exc}", file=sys.stderr)
        return 2
    if args.action != "status":
        print(f"{args.action}: {args.key}")
    return 0


def _print_statuses(statuses: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="keys")
    for col in ("key_id", "model", "active", "state", "rpm", "tpm", "rpd"):
        table.add_column(col)
    for st in statuses:
        if st["disabled"]:
            state = f"disabled: {st['disabled_reason']}"
        elif st["in_cooldown"]:
            state = f"cooldown {st['cooldown_remaining']:.0f}s: {st['cooldown_reason']}"
        else:
            state = "ready"
        rpd = f"{st['rpd_usage']}/{st['rpd_limit']}" if st["rpd_limit"] else str(st["rpd_usage"])
        table.add_row(
            st["key_id"],
            st["model_name"],
            str(st["active"]),
            state,
            f"{st['rpm_usage']}/{st['rpm_limit']}",
            f"{st['tpm_usage']}/{st['tpm_limit']}",
            rpd,
        )
    Console().print(table)


def build_parser() -> argparse.ArgumentParser:
    """The ``rotating-llm`` argument parser."""
    parser = argparse.ArgumentParser(prog="rotating-llm", description=__doc__)
    parser.add_argument("--keys", help="keys file (default: $KEY_STORE_PATH, else ./keys.json)")
    parser.add_argument("--health-check", action="store_true", help="same as `health`")
    sub = parser.add_subparsers(dest="command")

    demo = sub.add_parser("demo", help="a live workload on the simulator (no Redis, no network)")
    demo.add_argument("--requests", type=int, default=100)
    demo.add_argument("--pool-size", type=int, default=4, help="number of keys")
    demo.add_argument("--rpm", type=int, default=10, help="requests per window per key")
    demo.add_argument("--window", type=float, default=5.0, help="seconds one 'minute' lasts")
    demo.add_argument("--workers", type=int, default=8)
    demo.add_argument("--redis-url", default=None, help="share limits through this Redis")
    demo.add_argument("--no-live", action="store_true", help="no live table")
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")
    demo.set_defaults(func=_cmd_demo)

    health = sub.add_parser("health", help="exit 0 only when the pool is usable")
    health.add_argument("--json", action="store_true")
    health.set_defaults(func=_cmd_health)

    keys = sub.add_parser("keys", help="key status and control")
    ksub = keys.add_subparsers(dest="action", required=True)
    status = ksub.add_parser("status", help="usage and health of every key")
    status.add_argument("--json", action="store_true")
    status.add_argument("--model", default=None)
    cool = ksub.add_parser("cooldown", help="cool a key down")
    cool.add_argument("key")
    cool.add_argument("--seconds", type=float, default=None, help="default: growing backoff")
    cool.add_argument("--reason", default="manual cooldown")
    ksub.add_parser("clear", help="end a key's cooldown").add_argument("key")
    dis = ksub.add_parser("disable", help="take a key out of rotation")
    dis.add_argument("key")
    dis.add_argument("--reason", default="disabled by operator")
    ksub.add_parser("enable", help="put a disabled key back").add_argument("key")
    keys.set_defaults(func=_cmd_keys)
    from rotating_llm import _cli_top, cli_keys_test

    cli_keys_test.configure_parser(ksub)
    _cli_top.configure_parser(sub.add_parser("top", help="live view of every pool and key"))

    from rotating_llm.scanner import cli as scan_cli
    from rotating_llm.testing import cli as fake_cli

    fake = sub.add_parser("fake-provider", help="run the provider simulator")
    fake_cli.configure_parser(fake)
    fake.set_defaults(func=fake_cli.run)
    scan = sub.add_parser("scan", help="scan files for leaked API keys")
    scan_cli.configure_parser(scan)
    scan.set_defaults(func=scan_cli.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rotating-llm`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.health_check:
        args.json = False
        return _cmd_health(args)
    if args.command is None:
        parser.print_help()
        return 2
    code: int = args.func(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
