"""Each example of the design document, run as a script against the simulator and Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.multiprocess]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

EXPECTED = {
    "seed_quick_start.py": [
        "System healthy: True",
        "Response: You said: Hello! Can you confirm you received this message?",
        "Model: gemini-2.5-flash",
        "Tokens: {'prompt': ",
    ],
    "seed_orchestrator.py": ["Task plan (gemini-2.5-pro, key gemini-pro-01): You said: Plan tasks"],
    "seed_coder.py": ["Code (", "You said: Generate Python strategy code:"],
    "seed_debugger.py": [
        "Analysis (key gemini-flash-0",
        "Follow-up (key gemini-flash-0",
        "You said: What's the root cause?",
        ": 4 messages",
    ],
}


def test_every_seed_example_runs(redis_url: str, prefix: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KEY_STORE_PATH"}
    env.update(REDIS_URL=redis_url, ROTATING_LLM_KEY_PREFIX=prefix, PYTHONUNBUFFERED="1")
    procs = {
        name: subprocess.Popen(
            [sys.executable, str(EXAMPLES / name)],
            env=env,
            cwd=EXAMPLES,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in EXPECTED
    }
    outputs = {name: proc.communicate(timeout=180)[0] for name, proc in procs.items()}
    for name, proc in procs.items():
        out = outputs[name]
        assert proc.returncode == 0, f"{name} failed:\n{out}"
        assert "the simulator at http://127.0.0.1:" in out
        for line in EXPECTED[name]:
            assert line in out, f"{name}: {line!r} missing from:\n{out}"
        assert "AIza-demo-" not in out  # the demo secrets are never printed
