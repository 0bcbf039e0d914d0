"""The secret scanner on generated corpora: every planted key found, nothing else, never whole."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rotating_llm.scanner import scan_paths, scan_text
from rotating_llm.scanner.cli import main
from rotating_llm.scanner.corpus import (
    KINDS,
    make_key,
    write_negative_corpus,
    write_positive_corpus,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def positive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = tmp_path / "pos"
    planted = write_positive_corpus(root)
    monkeypatch.chdir(root)
    return planted


@pytest.fixture
def negative(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "neg"
    write_negative_corpus(root)
    monkeypatch.chdir(root)
    return root


def secret_parts(value: str) -> list[str]:
    """The value and, for a private key, its body lines: none may appear in any output."""
    return [value, *(ln for ln in value.splitlines() if "-----" not in ln)]


def test_every_planted_key_is_found_where_it_is(positive) -> None:
    result = scan_paths(["."])
    found = {(f.file, f.line, f.detector) for f in result.findings}
    expected = {(p.file, p.line, p.detector) for p in positive}
    assert expected <= found
    assert found == expected  # nothing else reported
    kinds = {p.kind for p in positive}
    assert kinds == set(KINDS)
    files = {Path(p.file).suffix or p.file for p in positive}
    assert {".py", ".env", ".json", ".yaml", ".ipynb", ".md", ".txt", ".toml"} <= files


@pytest.mark.parametrize("fmt", ["text", "json", "sarif"])
def test_no_output_format_prints_a_secret_whole(
    positive, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([".", "--format", fmt, "--fail-on-found"]) == 1
    out = capsys.readouterr().out
    for planted in positive:
        for part in secret_parts(planted.value):
            assert part not in out
    assert "notes/chat.txt:1:" in out or fmt != "text"


def test_placeholders_and_lookalikes_are_not_findings(
    negative: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = scan_paths(["."])
    assert result.findings == []
    assert result.stats.files_scanned == 7
    assert main([".", "--fail-on-found"]) == 0
    assert "0 secrets found in 7 files" in capsys.readouterr().out


def test_key_without_telling_name_is_found() -> None:
    gemini, groq = make_key("google", _rng()), make_key("groq", _rng())
    found = scan_text(f"see https://x.googleapis.com/v1/m?key={gemini}&alt=sse\nuse {groq} ok\n")
    assert [(f.line, f.detector) for f in found] == [(1, "google-api-key"), (2, "groq-api-key")]
    assert all(f.redacted.endswith("chars)") for f in found)


def _rng():
    import random

    return random.Random(11)


def test_allow_comments(tmp_path: Path) -> None:
    key = make_key("openai-project", _rng())
    text = (
        f'a = "{key}"  # rotating-llm: allow-secret\n'
        f'b = "{key}"  # pragma: allowlist secret\n'
        "# rotating-llm: allow-secret-next-line\n"
        f'c = "{key}"\n'
        f'd = "{key}"\n'
    )
    assert [(f.line, f.detector) for f in scan_text(text)] == [(5, "openai-api-key")]


def test_binary_git_and_excluded_files_are_skipped(tmp_path: Path) -> None:
    key = make_key("anthropic", _rng())
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text(f"token = {key}\n")
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01" + key.encode())
    (tmp_path / "data.dat").write_bytes(b"head\x00" + key.encode())
    (tmp_path / "skip.log").write_text(key)
    (tmp_path / "keep.cfg").write_text(key + "\n")
    result = scan_paths([tmp_path], exclude=["*.log"])
    assert [Path(f.file).name for f in result.findings] == ["keep.cfg"]
    assert result.stats.skipped_binary == 2
    assert result.stats.skipped_excluded == 1
    assert result.stats.files_scanned == 1


def test_sarif_shape(positive, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([".", "--format", "sarif"]) == 0  # no --fail-on-found
    doc = json.loads(capsys.readouterr().out)
    assert doc["version"] == "2.1.0"
    assert doc["$schema"].endswith("sarif-2.1.0.json")
    run = doc["runs"][0]
    rule_ids = [rule["id"] for rule in run["tool"]["driver"]["rules"]]
    assert len(run["results"]) == len(positive)
    for result in run["results"]:
        assert result["ruleId"] in rule_ids
        assert rule_ids[result["ruleIndex"]] == result["ruleId"]
        assert result["message"]["text"]
        location = result["locations"][0]["physicalLocation"]
        assert location["region"]["startLine"] >= 1
        assert not location["artifactLocation"]["uri"].startswith("/")


def test_json_output(positive, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([".", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["findings"]) == len(positive)
    assert set(doc["findings"][0]) == {
        "file",
        "line",
        "column",
        "detector",
        "redacted",
        "fingerprint",
    }


def test_baseline_suppresses_known_and_reports_new(
    positive, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = tmp_path / "baseline.json"
    assert main([".", "--baseline", str(baseline), "--update-baseline"]) == 0
    text = baseline.read_text()
    assert all(p.value not in text for p in positive)
    capsys.readouterr()
    assert main([".", "--baseline", str(baseline), "--fail-on-found"]) == 0
    assert "0 secrets found" in capsys.readouterr().out
    Path("new.py").write_text("\n\nX_TOKEN = '" + make_key("generic-secret", _rng()) + "'\n")
    assert main([".", "--baseline", str(baseline), "--fail-on-found", "--format", "json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert [(f["file"], f["line"]) for f in doc["findings"]] == [("new.py", 3)]


def test_bad_baseline_and_missing_path_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "b.json"
    bad.write_text("[1, 2]")
    (tmp_path / "f.txt").write_text("hello\n")
    assert main([str(tmp_path / "f.txt"), "--baseline", str(bad)]) == 2
    assert main([str(tmp_path / "missing")]) == 2
    assert "no such file" in capsys.readouterr().out


@pytest.mark.multiprocess
def test_tools_script_and_module_entry(positive) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    script = REPO / "tools" / "secret_scanner.py"
    done = subprocess.run(
        [sys.executable, str(script), ".", "--fail-on-found"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 1
    assert "groq-api-key" in done.stdout
    assert all(p.value not in done.stdout for p in positive)
    clean = subprocess.run(
        [sys.executable, "-m", "rotating_llm.scanner", str(REPO / "tools")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert clean.returncode == 0, clean.stdout + clean.stderr


def test_pre_commit_hook_definition() -> None:
    import yaml

    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    assert hooks[0]["entry"] == "rotating-llm scan --fail-on-found"
    assert hooks[0]["language"] == "python"
