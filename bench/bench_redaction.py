"""Added cost per host log record with redaction installed versus not, in the same run.

A host's ``logger.info(fmt, *args)`` through a formatting handler writing to a string,
bare and with :func:`rotating_llm.redaction.install_redaction` and 20 registered secrets,
for records of several shapes that hold no secret (short arguments, a URL, an httpx
request line, a prose sentence, a separator line, identifiers and numbers). Bare and
redacted rounds alternate, so a load that comes and goes on the machine falls on both
sides; each figure is given as the best round and as the median round. Prints JSON (and
writes it with ``--out``): microseconds per record for each, the difference and the ratio.

    python bench/bench_redaction.py [--quick] [--records N] [--out bench/results/redaction.json]
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import secrets
import statistics
import time
from pathlib import Path

from rotating_llm import redaction

#: The target of the added cost per record that holds no secret.
TARGET_ADDED_US = 2.0
#: Record shapes without a secret: (format string, arguments).
CASES: dict[str, tuple[str, tuple[object, ...]]] = {
    "short_args": ("x %s %s", ("alpha", 42)),
    "url_and_status": ("x %s %s", ("GET https://api.example.com/v1/models?page=2", 200)),
    "httpx_request_line": (
        'HTTP Request: %s %s "%s %d %s"',
        (
            "POST",
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash"
            ":generateContent",
            "HTTP/1.1",
            200,
            "OK",
        ),
    ),
    "prose": (
        "%s",
        ("The request was retried after the provider answered with a quota error.",),
    ),
    "separator_line": ("%s", ("-" * 72,)),
    "identifiers": (
        "user_id=%s status_code=%d elapsed_ms=%.1f",
        ("usr_01HZX3", 200, 12.5),
    ),
}


def _round(logger: logging.Logger, n: int, fmt: str, args: tuple[object, ...]) -> float:
    start = time.thread_time()  # CPU time: the time other processes take the CPU is not ours
    for _ in range(n):
        logger.info(fmt, *args)
    return (time.thread_time() - start) / n * 1e6


def _logger() -> logging.Logger:
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logger = logging.getLogger("host.app")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def measure(n: int, rounds: int) -> dict[str, object]:
    """Microseconds per record, bare and redacted, rounds alternating: best and median."""
    logger = _logger()
    bare: dict[str, list[float]] = {name: [] for name in CASES}
    masked: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(20):
        redaction.register_secret("sk-bench-" + secrets.token_hex(16))
    key = "AIza" + secrets.token_urlsafe(27)[:35]
    with_secret = float("inf")
    try:
        for _ in range(rounds):  # bare and redacted rounds alternate, case by case
            for name, (fmt, args) in CASES.items():
                bare[name].append(_round(logger, n, fmt, args))
                redaction.install_redaction()
                try:
                    masked[name].append(_round(logger, n, fmt, args))
                finally:
                    redaction.uninstall_redaction()
            redaction.install_redaction()
            try:
                with_secret = min(with_secret, _round(logger, n // 10, "calling %s", (key,)))
            finally:
                redaction.uninstall_redaction()
    finally:
        redaction.clear_registered_secrets()
    results: dict[str, dict[str, object]] = {}
    for name in CASES:
        best_bare, best_masked = min(bare[name]), min(masked[name])
        med_bare, med_masked = statistics.median(bare[name]), statistics.median(masked[name])
        results[name] = {
            "bare_us": round(best_bare, 3),
            "redacted_us": round(best_masked, 3),
            "added_us": round(best_masked - best_bare, 3),
            "ratio": round(best_masked / best_bare, 3),
            "median_bare_us": round(med_bare, 3),
            "median_redacted_us": round(med_masked, 3),
            "median_added_us": round(med_masked - med_bare, 3),
            "met": best_masked - best_bare < TARGET_ADDED_US,
            "met_by_median": med_masked - med_bare < TARGET_ADDED_US,
        }
    results["holds_a_google_key"] = {"redacted_us": round(with_secret, 3)}
    load = os.getloadavg()
    return {
        "records_per_round": n,
        "rounds": rounds,
        "cpus": os.cpu_count(),
        "load_average_1m": round(load[0], 2),
        "target_added_us": TARGET_ADDED_US,
        "all_met": all(r.get("met", True) for r in results.values()),
        "results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000, help="records per round")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--quick", action="store_true", help="1,000 records, 10 rounds")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    opts = parser.parse_args()
    n, rounds = (1_000, 10) if opts.quick else (opts.records, opts.rounds)
    text = json.dumps(measure(n, rounds), indent=2)
    print(text)
    if opts.out is not None:
        opts.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
