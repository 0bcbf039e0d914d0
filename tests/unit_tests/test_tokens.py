"""Token counts offline: the bundled BPE files, the heuristic, no download, no LiteLLM import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rotating_llm import tokens
from rotating_llm.tokens import count_actual_tokens, encoding_for, estimate_tokens


def test_estimate_is_cheap_and_conservative() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("a b c d e") == 5  # at least one per word
    assert estimate_tokens("x" * 401) == 101


def test_encodings_by_model() -> None:
    assert encoding_for("gpt-4o-mini") == "o200k_base"
    assert encoding_for("openai/gpt-4.1") == "o200k_base"
    assert encoding_for("gpt-4") == "cl100k_base"
    assert encoding_for("gemini-2.5-flash") == "cl100k_base"


def test_real_counts_from_the_bundled_files() -> None:
    # known counts of tiktoken's encodings
    assert count_actual_tokens("hello world", "gpt-4") == 2
    assert count_actual_tokens("hello world", "gpt-4o") == 2
    assert count_actual_tokens("", "gpt-4o") == 0
    # special-token text is counted as plain text, never refused
    assert count_actual_tokens("<|endoftext|>", "gpt-4") > 1
    text = "def add(a: int, b: int) -> int:\n    return a + b\n" * 20
    real = count_actual_tokens(text, "gemini-2.5-flash")
    assert 0 < real < len(text) / 2
    assert real != estimate_tokens(text)  # a BPE count, not the heuristic


def test_fallback_without_tiktoken_files(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens._loaded.clear()
    monkeypatch.setattr(tokens, "_bundled_dir", lambda: None)
    try:
        assert count_actual_tokens("hello world, hello tokens", "gpt-4o") == estimate_tokens(
            "hello world, hello tokens"
        )
    finally:
        tokens._loaded.clear()


@pytest.mark.multiprocess
def test_offline_in_a_fresh_process_without_importing_litellm(tmp_path: Path) -> None:
    code = (
        "import sys, socket\n"
        "def no_net(*a, **k):\n"
        "    raise AssertionError('network used')\n"
        "socket.socket.connect = no_net\n"
        "socket.create_connection = no_net\n"
        "from rotating_llm.tokens import count_actual_tokens\n"
        "n = count_actual_tokens('hello world', 'gpt-4o')\n"
        "assert n == 2, n\n"
        "assert 'litellm' not in sys.modules\n"
        "print('ok', n)\n"
    )
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(tmp_path)}  # an empty cache
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok 2"
