"""Sans-I/O flows: each rule written once, driven by a sync and an async shell.

A flow is a generator that yields a :class:`Step` (what to do: reserve, read a secret,
settle, sleep ...) and receives its result, or has the step's exception thrown into it
where the I/O failed. :func:`drive` runs the steps with blocking calls; :func:`adrive`
awaits them on the event loop. So ``acquire`` and ``aacquire`` (and the failure
handling of ``fail``/``afail``) share every decision and differ only in how they wait,
as httpx's auth flows do for its two clients.

A step may carry an ``undo``: what must happen if the caller gives up while the step
runs (a ``KeyboardInterrupt``, a cancelled task), such as releasing a grant whose
secret was being read. :func:`drive` runs it before the interruption goes on;
:func:`adrive` hands it to the shell's ``later`` to run in the background (a cancelled
task cannot await).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

__all__ = ["Flow", "Step", "adrive", "drive"]

T = TypeVar("T")

logger = logging.getLogger("rotating_llm.keys")


class Step:
    """One piece of I/O a flow asks for: an operation name, its arguments and, optionally,
    the step that undoes what came before it if the caller gives up during it."""

    __slots__ = ("args", "op", "undo")

    def __init__(self, op: str, *args: Any, undo: Step | None = None) -> None:
        self.op, self.args, self.undo = op, args, undo

    def __repr__(self) -> str:
        return f"Step({self.op!r})"  # arguments may hold reservations: not shown


Flow = Generator[Step, Any, T]


def drive(flow: Flow[T], io: Callable[[Step], Any]) -> T:
    """Run ``flow`` to its end with the blocking ``io``; returns what the flow returns."""
    result: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = flow.send(result) if error is None else flow.throw(error)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        result, error = None, None
        try:
            result = io(step)
        except Exception as exc:  # handed to the flow, which decides
            error = exc
        except BaseException:  # the caller gives up (KeyboardInterrupt, SystemExit)
            flow.close()
            if step.undo is not None:
                _undo(io, step.undo)
            raise


def _undo(io: Callable[[Step], Any], undo: Step) -> None:
    try:
        io(undo)
    except Exception as exc:  # what it would undo then expires with its window
        logger.warning("could not undo after an interruption (%s): %s", undo.op, exc)


async def adrive(
    flow: Flow[T],
    io: Callable[[Step], Awaitable[Any]],
    later: Callable[[Awaitable[Any]], None] | None = None,
) -> T:
    """Async twin of :func:`drive`: each step is awaited on the running loop; the undo of
    an interrupted step (a cancelled task) is handed to ``later`` (run in the background)."""
    result: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = flow.send(result) if error is None else flow.throw(error)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        result, error = None, None
        try:
            result = await io(step)
        except Exception as exc:
            error = exc
        except BaseException:  # cancelled, or interrupted: the undo cannot be awaited here
            flow.close()
            if step.undo is not None and later is not None:
                later(_aundo(io, step.undo))
            raise


async def _aundo(io: Callable[[Step], Awaitable[Any]], undo: Step) -> None:
    try:
        await io(undo)
    except Exception as exc:
        logger.warning("could not undo after a cancellation (%s): %s", undo.op, exc)
