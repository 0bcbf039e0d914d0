"""The LangChain examples run end to end against the simulator they start themselves."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.multiprocess]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("langchain_chain.py", "streamed: You said: Explain Redis Lua."),
        ("langchain_agent.py", "tool multiply({'a': 6, 'b': 7}) -> 42"),
        ("langchain_history.py", "8 messages kept"),
    ],
)
def test_example_runs_on_the_simulator(name: str, expected: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KEY_STORE_PATH"}
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "using the simulator" in done.stdout
    assert expected in done.stdout
    keys = {w for line in done.stdout.splitlines() for w in line.split() if "demo-" in w}
    assert len(keys) >= 2, "the example's calls rotated over several keys"
