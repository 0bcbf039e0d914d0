"""``rotating-llm top`` counts what every process served, got 429s for and was refused,
from Redis: real worker processes on a real Redis, then ``top --json`` as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.redis, pytest.mark.multiprocess, pytest.mark.slow]

WORKERS = 4
SECRETS = {"API_KEY_T0": "rates-t0-secret", "API_KEY_T1": "rates-t1-secret"}
SECRETS["API_KEY_R0"] = "rates-r0-secret"


def _keys_file(tmp_path: Path) -> Path:
    keys = [
        {"key_id": "t0", "model_name": "m", "provider": "gemini", "rpm": 100, "tpm": 10_000},
        {"key_id": "t1", "model_name": "m", "provider": "gemini", "rpm": 100, "tpm": 10_000},
        {"key_id": "r0", "model_name": "r", "provider": "gemini", "rpm": 1, "tpm": 10_000},
    ]
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": keys}))
    return path


def test_top_adds_up_every_process_served_429_and_refused(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    keys = _keys_file(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("API_KEY_")}
    env.update(
        SECRETS,
        REDIS_URL=redis_url,
        ROTATING_LLM_KEY_PREFIX=prefix,
        KEY_STORE_PATH=str(keys),
        ROTATING_LLM_PROBE_SECONDS="0",
    )
    worker = str(Path(__file__).with_name("_rates_worker.py"))
    procs = [
        subprocess.Popen(
            [sys.executable, worker, str(keys)], stdout=subprocess.PIPE, text=True, env=env
        )
        for _ in range(WORKERS)
    ]
    outs = [p.communicate(timeout=120)[0].split() for p in procs]
    assert [p.returncode for p in procs] == [0] * WORKERS
    assert sorted(o[-1] for o in outs) == ["refused-r"] * (WORKERS - 1) + ["served-r"]

    top = subprocess.run(
        [sys.executable, "-m", "rotating_llm", "top", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert top.returncode == 0, top.stderr
    snap = json.loads(top.stdout)
    assert snap["rates"]["m"]["counts"] == {
        "served": 3 * WORKERS,
        "rate_limited": WORKERS,
        "refused": 0,
    }
    assert snap["rates"]["r"]["counts"] == {
        "served": 1,
        "rate_limited": 0,
        "refused": WORKERS - 1,
    }
    assert snap["rates"]["m"]["window_s"] == 300
    rows = snap["pools"]["m"]
    assert sum(r["served_5m"] for r in rows) == 3 * WORKERS
    assert sum(r["rate_limited_5m"] for r in rows) == WORKERS
    assert {r["key_id"]: r["served_5m"] for r in snap["pools"]["r"]} == {"r0": 1}
    # per-minute rates weigh the previous minute by its share of the last 60 s
    per_min = snap["rates"]["m"]["per_minute"]
    assert 0 < per_min["served"] <= 3 * WORKERS and 0 < per_min["rate_limited"] <= WORKERS
    assert "secret" not in top.stdout
