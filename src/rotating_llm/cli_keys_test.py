"""``rotating-llm keys test KEY|--all``: the prober's check, on demand, per key."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["configure_parser", "run"]


def configure_parser(ksub: Any) -> None:
    """Add ``test`` to the ``keys`` subcommands."""
    test = ksub.add_parser("test", help="ask the provider whether keys are accepted")
    test.add_argument("key", nargs="?", default=None)
    test.add_argument("--all", action="store_true", help="every key of the keys file")
    test.add_argument("--json", action="store_true")
    test.add_argument("--timeout", type=float, default=10.0, help="seconds per call")
    test.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Probe the keys; exit 1 if the provider rejects any, 2 on bad input."""
    from rotating_llm.errors import RotatingLLMError
    from rotating_llm.keys import KeyManager
    from rotating_llm.keys._prober import probe_key

    if (args.key is None) == (not args.all):
        print("rotating-llm: keys test needs one KEY or --all", file=sys.stderr)
        return 2
    path = Path(args.keys or os.environ.get("KEY_STORE_PATH") or "keys.json")
    try:
        km = KeyManager(key_store_path=path, probe=False)
        keys = km.keys if args.all else [km.get_key(args.key)]
        verdicts = []
        for key in keys:
            secret = km.secret_store.get_secret(key.key_id).get_secret_value()
            verdicts.append(probe_key(key, secret, timeout=args.timeout))
    except RotatingLLMError as exc:
        print(f"rotating-llm: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([v.__dict__ for v in verdicts], indent=2))
    else:
        for v in verdicts:
            print(f"{v.key_id}: {v.detail}")
    return 1 if any(v.accepted is False for v in verdicts) else 0
