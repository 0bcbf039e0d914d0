"""The flows' undo: a step interrupted by the caller giving up runs (sync) or hands off
(async) the undo it carries; an ordinary error still goes to the flow."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import pytest

from rotating_llm.keys._flow import Flow, Step, adrive, drive


def flow() -> Flow[str]:
    granted = yield Step("grant")
    try:
        yield Step("read", undo=Step("release", granted))
    except ValueError:
        yield Step("release", granted)
        return "released after an error"
    return "done"


def test_an_interrupted_step_runs_its_undo_then_goes_on() -> None:
    seen: list[tuple[str, tuple[Any, ...]]] = []

    def io(step: Step) -> Any:
        seen.append((step.op, step.args))
        if step.op == "read":
            raise KeyboardInterrupt
        return "g1"

    with pytest.raises(KeyboardInterrupt):
        drive(flow(), io)
    assert seen == [("grant", ()), ("read", ()), ("release", ("g1",))]


def test_an_ordinary_error_goes_to_the_flow_not_to_the_undo() -> None:
    seen: list[str] = []

    def io(step: Step) -> Any:
        seen.append(step.op)
        if step.op == "read":
            raise ValueError("backend")
        return "g1"

    assert drive(flow(), io) == "released after an error"
    assert seen == ["grant", "read", "release"]


async def test_a_cancelled_step_hands_its_undo_to_the_background() -> None:
    seen: list[tuple[str, tuple[Any, ...]]] = []
    later: list[Awaitable[Any]] = []
    reading = asyncio.Event()

    async def io(step: Step) -> Any:
        seen.append((step.op, step.args))
        if step.op == "read":
            reading.set()
            await asyncio.sleep(30)
        return "g1"

    task = asyncio.ensure_future(adrive(flow(), io, later.append))
    await reading.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(later) == 1 and seen[-1] == ("read", ())
    await later[0]
    assert seen[-1] == ("release", ("g1",))
