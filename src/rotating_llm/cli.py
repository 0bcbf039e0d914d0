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


#: ``keys`` actions that change shared state: refused unless a reachable Redis holds it.
STATE_CHANGING = frozenset({"cooldown", "clear", "disable", "enable"})


def _manager(args: argparse.Namespace, *, changes_state: bool = False) -> Any:
    """The keys file's manager; for a state change, on a reachable Redis or not at all.

    Raises:
        ConfigError: a state change with ``REDIS_URL`` unset (the embedded store would
            forget it when this process exits).
        StoreUnavailableError: a state change while Redis does not answer.
    """
    from rotating_llm.config import Settings
    from rotating_llm.errors import ConfigError
    from rotating_llm.keys import KeyManager

    settings = Settings.from_env()
    if not changes_state:  # a command never takes part in the prober's election
        return KeyManager(key_store_path=_keys_path(args), settings=settings, probe=False)
    if settings.redis_url is None:
        raise ConfigError(
            "REDIS_URL is not set: the embedded store lives only in this process, so this "
            "change would be lost when it exits; set REDIS_URL to the Redis your apps use"
        )
    settings = settings.model_copy(update={"on_store_failure": "deny"})
    km = KeyManager(key_store_path=_keys_path(args), settings=settings, probe=False)
    try:
        km.store.primary.sync.ping()
    except Exception as exc:  # any driver error: refuse, name the store, not the password
        km.close()
        from rotating_llm.errors import StoreUnavailableError

        raise StoreUnavailableError(
            f"Redis at {km.store.primary.description} does not answer "
            f"({type(exc).__name__}); nothing was changed"
        ) from None
    return km


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
    for tier, n in sorted(result.per_tier.items()):
        table.add_row(f"served by tier {tier}", str(n))
    table.add_row(
        "conversation turns on their last key",
        f"{result.affinity['held']} (moved {result.affinity['moved']})",
    )
    Console().print(table)
    return 0 if result.failed == 0 else 1


#: Providers the library's faces build models for; others need ``provider_factories``.
KNOWN_PROVIDERS = ("gemini", "openai")


def health_report(args: argparse.Namespace) -> dict[str, Any]:
    """Healthy when the store answers, the keys load and one active key's secret resolves.

    Problems are named: each active key whose secret is missing (and where it was looked
    for), and each provider no face knows (``--provider NAME`` declares a custom one).
    """
    import difflib

    from rotating_llm.errors import RotatingLLMError

    try:
        km = _manager(args)
    except RotatingLLMError as exc:
        return {"healthy": False, "error": str(exc), "keys_file": str(_keys_path(args))}
    report: dict[str, Any] = km.health_check()
    report["keys_file"] = str(_keys_path(args))
    resolved, missing = [], {}
    for key in km.keys:
        if key.active:
            found = km.secret_store.describe(key.key_id)
            if found["found"]:
                resolved.append(key.key_id)
            else:
                missing[key.key_id] = f"{found['store']}: {found['location']}"
    known = (*KNOWN_PROVIDERS, *(getattr(args, "provider", None) or ()))
    unknown = {}
    for key in km.keys:
        if key.provider not in known:
            close = difflib.get_close_matches(key.provider, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            unknown[key.key_id] = f"unknown provider {key.provider!r} (known: {known}){hint}"
    problems: list[str] = report.setdefault("problems", [])
    problems += [f"secret of {kid} missing ({where})" for kid, where in missing.items()]
    problems += [f"{kid}: {why}" for kid, why in unknown.items()]
    if not resolved and not missing and report.get("models"):
        problems.append("no active key has a secret")
    report["secrets_resolved"] = resolved
    report["secrets_missing"] = missing
    report["unknown_providers"] = unknown
    report["healthy"] = bool(report["healthy"] and resolved and not unknown)
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
        km = _manager(args, changes_state=args.action in STATE_CHANGING)
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
        print(f"rotating-llm: {_one_line(exc)}", file=sys.stderr)
        return 2
    km.close()
    if args.action != "status":
        print(f"{args.action}: {args.key}")
    return 0


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _print_statuses(statuses: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    from rotating_llm.keys._status import learned_summary

    table = Table(title="keys")
    cols = ("key_id", "model", "tier", "active", "state", "rpm", "tpm", "rpd", "tpd", "group")
    for col in (*cols, "learned"):
        table.add_column(col)
    groups: dict[str, dict[str, Any]] = {}
    for st in statuses:
        if st.get("group"):
            groups[st["group"]["group_id"]] = st["group"]
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
            str(st.get("tier", 0)),
            str(st["active"]),
            state,
            f"{st['rpm_usage']}/{st['rpm_limit']}",
            f"{st['tpm_usage']}/{st['tpm_limit']}",
            rpd,
            _used(st, "tpd"),
            st.get("quota_group") or "",
            learned_summary(st),
        )
    Console().print(table)
    if groups:
        gtable = Table(title="quota groups")
        gcols = ("group_id", "model", "keys", "rpm", "tpm", "rpd", "tpd", "next capacity")
        for col in (*gcols, "learned"):
            gtable.add_column(col)
        for gid, g in sorted(groups.items()):
            nxt = g["next_capacity_in"]
            gtable.add_row(
                gid,
                str(g["model_name"]),
                ",".join(g["key_ids"]),
                *(_used(g, m) for m in ("rpm", "tpm", "rpd", "tpd")),
                "now" if not nxt else f"{nxt:.0f}s",
                learned_summary(g),
            )
        Console().print(gtable)


def _used(st: dict[str, Any], metric: str) -> str:
    """``used/limit`` of one limit (``used`` alone when there is no such limit)."""
    used, limit = st[f"{metric}_usage"], st[f"{metric}_limit"]
    return f"{used}/{limit}" if limit else str(used)


def build_parser() -> argparse.ArgumentParser:
    """The ``rotating-llm`` argument parser."""
    parser = argparse.ArgumentParser(prog="rotating-llm", description=__doc__)
    keys_help = "keys file (default: $KEY_STORE_PATH, else ./keys.json)"
    parser.add_argument("--keys", help=keys_help)
    # ``--keys`` before or after a subcommand: sub-parsers set it only when it is given
    takes_keys = argparse.ArgumentParser(add_help=False)
    takes_keys.add_argument("--keys", default=argparse.SUPPRESS, help=keys_help)
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

    health = sub.add_parser(
        "health", help="exit 0 only when the pool is usable", parents=[takes_keys]
    )
    health.add_argument("--json", action="store_true")
    health.add_argument(
        "--provider", action="append", help="a custom provider name (provider_factories)"
    )
    health.set_defaults(func=_cmd_health)

    keys = sub.add_parser("keys", help="key status and control", parents=[takes_keys])
    ksub = keys.add_subparsers(dest="action", required=True)
    status = ksub.add_parser("status", help="usage and health of every key", parents=[takes_keys])
    status.add_argument("--json", action="store_true")
    status.add_argument("--model", default=None)
    cool = ksub.add_parser("cooldown", help="cool a key down", parents=[takes_keys])
    cool.add_argument("key")
    cool.add_argument("--seconds", type=float, default=None, help="default: growing backoff")
    cool.add_argument("--reason", default="manual cooldown")
    ksub.add_parser("clear", help="end a key's cooldown", parents=[takes_keys]).add_argument("key")
    dis = ksub.add_parser("disable", help="take a key out of rotation", parents=[takes_keys])
    dis.add_argument("key")
    dis.add_argument("--reason", default="disabled by operator")
    ksub.add_parser("enable", help="put a disabled key back", parents=[takes_keys]).add_argument(
        "key"
    )
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
