"""Keeps the ``multiprocess`` marker honest: a test that starts a Python process must carry it.

``python -m pytest -m "not slow and not multiprocess"`` is the fast local subset, so a test
that starts Python processes without the marker would slow it down unseen. Every test run
(the whole suite in CI included) watches the set-up and call of each test for

- a ``multiprocessing`` process of any start method (``spawn``, ``fork``, ``forkserver``;
  pools and ``ProcessPoolExecutor`` workers included), and
- a ``subprocess`` of a Python interpreter or of a Python console script (``litellm``),

and fails an unmarked test that started one, naming what it started. Servers that are not
Python (``redis-server``, ``bao``) are fast to start and do not count. A process started
by a module- or session-scoped fixture counts for the test that first needs it: run alone,
that test starts it.
"""

from __future__ import annotations

import multiprocessing.process
import os
import shutil
import sys
from collections.abc import Callable, Generator, Sequence
from typing import Any

import pytest

__all__ = ["is_python_program", "pytest_runtest_makereport", "pytest_runtest_setup", "started"]

#: what the running test has started so far (reset at each test's set-up)
started: list[str] = []
_PYTHON = os.path.realpath(sys.executable)


def is_python_program(program: str) -> bool:
    """Whether ``program`` (a name on PATH or a path) is a Python interpreter or script."""
    path = shutil.which(program) or program
    name = os.path.basename(path)
    if name.startswith("python") or os.path.realpath(path) == _PYTHON:
        return True
    try:
        with open(path, "rb") as fh:
            first = fh.readline(200)
    except OSError:
        return False
    return first.startswith(b"#!") and b"python" in first


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event != "subprocess.Popen":
        return
    executable, argv = args[0], args[1]
    if isinstance(argv, (str, bytes, os.PathLike)):
        argv = [argv]
    program = executable if executable is not None else (argv[0] if argv else "")
    program = os.fsdecode(program)
    if program and is_python_program(program):
        started.append(f"subprocess {os.path.basename(program)}")


sys.addaudithook(_audit)

_start: Callable[[multiprocessing.process.BaseProcess], None] = (
    multiprocessing.process.BaseProcess.start
)


def _counted_start(self: multiprocessing.process.BaseProcess) -> None:
    started.append(f"multiprocessing {type(self).__name__}")
    _start(self)


# The one wrapper this test suite puts on another library's object: every start method
# goes through BaseProcess.start, and spawn/forkserver starts raise no audit event.
multiprocessing.process.BaseProcess.start = _counted_start  # type: ignore[method-assign]


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Forget what earlier tests started."""
    del item
    started.clear()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Fail a passed call of an unmarked test that started Python processes."""
    report = yield
    if call.when != "call" or not report.passed or not started:
        return report
    if item.get_closest_marker("multiprocess") is None:
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid} started Python processes ({_summary(started)}) "
            "but is not marked multiprocess: add @pytest.mark.multiprocess "
            "(the fast subset -m 'not slow and not multiprocess' must stay fast)"
        )
    return report


def _summary(what: Sequence[str]) -> str:
    counts: dict[str, int] = {}
    for w in what:
        counts[w] = counts.get(w, 0) + 1
    return ", ".join(f"{n} x {w}" for w, n in counts.items())
