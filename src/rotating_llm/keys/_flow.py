"""Sans-I/O flows: each rule written once, driven by a sync and an async shell.

A flow is a generator that yields a :class:`Step` (what to do: reserve, read a secret,
settle, sleep ...) and receives its result, or has the step's exception thrown into it
where the I/O failed. :func:`drive` runs the steps with blocking calls; :func:`adrive`
awaits them on the event loop. So ``acquire`` and ``aacquire`` (and the failure
handling of ``fail``/``afail``) share every decision and differ only in how they wait,
as httpx's auth flows do for its two clients.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

__all__ = ["Flow", "Step", "adrive", "drive"]

T = TypeVar("T")


class Step:
    """One piece of I/O a flow asks for: an operation name and its arguments."""

    __slots__ = ("args", "op")

    def __init__(self, op: str, *args: Any) -> None:
        self.op, self.args = op, args

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


async def adrive(flow: Flow[T], io: Callable[[Step], Awaitable[Any]]) -> T:
    """Async twin of :func:`drive`: each step is awaited on the running loop."""
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
