"""``python -m rotating_llm.router --health-check``: the original design's router health check.

Prints the report as JSON; exit code 0 only when healthy. Keys come from ``--keys`` or
``KEY_STORE_PATH`` (default ``./keys.json``).
"""

from __future__ import annotations

import argparse
import json
import sys

from rotating_llm.errors import RotatingLLMError
from rotating_llm.keys import get_key_manager
from rotating_llm.router._router import RequestRouter


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m rotating_llm.router")
    parser.add_argument("--health-check", action="store_true", help="check and exit")
    parser.add_argument("--keys", help="keys file (default: KEY_STORE_PATH or ./keys.json)")
    args = parser.parse_args(argv)
    if not args.health_check:
        parser.print_help()
        return 2
    try:
        manager = get_key_manager(key_store_path=args.keys) if args.keys else get_key_manager()
    except RotatingLLMError as exc:
        print(json.dumps({"healthy": False, "error": str(exc)}, indent=2))
        return 1
    report = RequestRouter(manager).health_check()
    print(json.dumps(report, indent=2, default=str))
    manager.close()
    return 0 if report["healthy"] else 1


if __name__ == "__main__":
    sys.exit(main())
