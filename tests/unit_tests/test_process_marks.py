"""The check that keeps the ``multiprocess`` marker honest (``tests/_process_marks.py``)."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from _process_marks import is_python_program, pytest_runtest_makereport, started


def test_python_programs_are_told_from_other_servers(tmp_path: Path) -> None:
    assert is_python_program(sys.executable)
    assert is_python_program("python3")
    assert not is_python_program("/bin/sh")
    assert not is_python_program(str(tmp_path / "missing"))
    script = tmp_path / "tool"
    script.write_text("#!/usr/bin/env python3\nprint(1)\n")
    assert is_python_program(str(script))  # a console script such as ``litellm``
    binary = tmp_path / "server"
    binary.write_bytes(b"\x7fELF\x02\x01python")
    assert not is_python_program(str(binary))


@pytest.mark.multiprocess
def test_process_starts_of_every_kind_are_seen() -> None:
    before = len(started)
    subprocess.run(["true"], check=True)  # not Python: not counted
    assert len(started) == before
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    proc = multiprocessing.get_context("spawn").Process(target=os.getpid)
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0
    assert started[before:] == [
        f"subprocess {os.path.basename(sys.executable)}",
        "multiprocessing SpawnProcess",
    ]


def _outcome(marked: bool, when: str = "call") -> Any:
    item = SimpleNamespace(
        nodeid="t.py::test_x", get_closest_marker=lambda name: object() if marked else None
    )
    report = SimpleNamespace(passed=True, outcome="passed", longrepr=None)
    hook = pytest_runtest_makereport(item, SimpleNamespace(when=when))  # type: ignore[arg-type]
    next(hook)
    with pytest.raises(StopIteration) as stop:
        hook.send(report)  # type: ignore[arg-type]
    return stop.value.value


def test_an_unmarked_test_that_started_processes_fails_and_a_marked_one_passes() -> None:
    saved = started[:]
    started[:] = ["multiprocessing SpawnProcess"] * 2
    try:
        failed = _outcome(marked=False)
        assert failed.outcome == "failed"
        assert "2 x multiprocessing SpawnProcess" in failed.longrepr
        assert "not marked multiprocess" in failed.longrepr
        assert _outcome(marked=True).outcome == "passed"
        assert _outcome(marked=False, when="setup").outcome == "passed"  # judged at the call
    finally:
        started[:] = saved
