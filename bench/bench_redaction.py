"""Added cost per host log record with redaction installed versus not, in the same run.

A host's ``logger.info("x %s %s", a, b)`` through a formatting handler writing to a string,
first bare, then with :func:`rotating_llm.redaction.install_redaction` and some registered
secrets. Prints JSON: microseconds per record for each, the difference and the ratio.

    python bench/bench_redaction.py [--quick] [--records N]
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import secrets
import time

from rotating_llm import redaction


def _per_record(logger: logging.Logger, n: int, args: tuple[object, ...]) -> float:
    best = float("inf")
    for _ in range(5):  # best of five: the least disturbed by other processes
        start = time.perf_counter()
        for _ in range(n):
            logger.info("x %s %s", *args)
        best = min(best, (time.perf_counter() - start) / n)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--quick", action="store_true", help="2,000 records per round")
    opts = parser.parse_args()
    n = 2_000 if opts.quick else opts.records
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logger = logging.getLogger("host.app")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    cases = {
        "short_args": ("alpha", 42),
        "url_and_status": ("GET https://api.example.com/v1/models?page=2", 200),
    }
    results: dict[str, dict[str, float]] = {}
    bare = {name: _per_record(logger, n, args) for name, args in cases.items()}
    for _ in range(20):
        redaction.register_secret("sk-bench-" + secrets.token_hex(16))
    redaction.install_redaction()
    try:
        masked = {name: _per_record(logger, n, args) for name, args in cases.items()}
        key = "AIza" + secrets.token_urlsafe(27)[:35]
        with_secret = _per_record(logger, n, ("calling", key))
    finally:
        redaction.uninstall_redaction()
        redaction.clear_registered_secrets()
    for name in cases:
        results[name] = {
            "bare_us": round(bare[name], 3),
            "redacted_us": round(masked[name], 3),
            "added_us": round(masked[name] - bare[name], 3),
            "ratio": round(masked[name] / bare[name], 3),
        }
    results["holds_a_google_key"] = {"redacted_us": round(with_secret, 3)}
    print(
        json.dumps({"records_per_round": n, "target_added_us": 2.0, "results": results}, indent=2)
    )


if __name__ == "__main__":
    main()
