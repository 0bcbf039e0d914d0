"""Every Python block of the README runs as written, against the simulator and a real Redis.

The blocks run in a subprocess each, in a folder holding the README's keys file with each
key's ``base_url`` pointing at the simulator (as the README says to try it), the keys'
secrets in ``API_KEY_*`` variables and ``REDIS_URL`` set: the text of each block is the
README's own.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from rotating_llm.testing import FakeProvider

pytestmark = [pytest.mark.redis, pytest.mark.slow]

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def _keys_file(text: str) -> dict[str, object]:
    """The README's own keys file (its first ```json block)."""
    found = re.search(r"```json\n(.*?)```", text, flags=re.S)
    assert found, "the README shows a keys file"
    return json.loads(found.group(1))


@pytest.fixture(scope="module")
def provider():
    with FakeProvider(rpm=1000, window=60.0) as fp:
        yield fp


def test_the_readme_has_python_blocks() -> None:
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=lambda i: f"block{i}")
@pytest.mark.multiprocess
def test_readme_block_runs(index: int, provider, redis_url: str, tmp_path: Path) -> None:
    keys = _keys_file(README.read_text(encoding="utf-8"))
    for key in keys["keys"]:  # type: ignore[union-attr]
        key["base_url"] = provider.url
    (tmp_path / "keys.json").write_text(json.dumps(keys))
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "ROTATING_LLM_KEY_PREFIX": f"readme{uuid.uuid4().hex[:8]}:",
        "API_KEY_GEMINI_FLASH_01": f"sk-readme-{uuid.uuid4().hex}",
        "API_KEY_GEMINI_FLASH_02": f"sk-readme-{uuid.uuid4().hex}",
        "KEY_STORE_PATH": str(tmp_path / "keys.json"),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "PYTHONWARNINGS": "ignore",
    }
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKS[index]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"README block {index} failed:\n{BLOCKS[index]}\n{proc.stderr[-3000:]}"
