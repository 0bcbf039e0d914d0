"""Ways to run the simulator: in a thread of this process, in a child process, in the foreground."""

from __future__ import annotations

import asyncio
import signal
import threading
from typing import TYPE_CHECKING, Any

from rotating_llm.testing._config import LIMIT_NAMES, Limits
from rotating_llm.testing._state import State

if TYPE_CHECKING:
    from collections.abc import Callable
    from multiprocessing.connection import Connection

__all__ = ["ServerThread", "build_state", "child_main", "serve_forever"]


def build_state(config: dict[str, Any]) -> State:
    """Build a :class:`State` from a plain (picklable) config dict."""
    return State(
        Limits.from_dict({k: config.get(k) for k in LIMIT_NAMES}),
        window=float(config.get("window", 60.0)),
        day_window=float(config.get("day_window", 86_400.0)),
        keys=config.get("keys"),
        tpm_counts=config.get("tpm_counts", "input"),
        day_reset=config.get("day_reset"),
        projects=config.get("projects"),
        project_limits=Limits.from_dict(config.get("project_limits"), "project limits"),
        true_limits=config.get("true_limits"),
    )


async def serve_forever(
    state: State,
    host: str,
    port: int,
    on_ready: Callable[[int], None],
    stop: asyncio.Event,
) -> None:
    """Serve until ``stop`` is set; call ``on_ready(port)`` once listening."""
    from rotating_llm.testing._server import close_site, open_site

    runner, simulator, bound = await open_site(state, host, port)
    try:
        on_ready(bound)
        await stop.wait()
    finally:
        await close_site(runner, simulator)


def install_signal_handlers(stop: asyncio.Event) -> None:
    """Set ``stop`` on SIGINT and SIGTERM (where the platform allows it)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - Windows
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))


def child_main(config: dict[str, Any], conn: Connection) -> None:
    """Entry point of the child process: serve until told to stop or orphaned."""

    async def main() -> None:
        stop = asyncio.Event()
        install_signal_handlers(stop)
        loop = asyncio.get_running_loop()
        loop.add_reader(conn.fileno(), stop.set)  # a message or the parent's exit
        await serve_forever(
            build_state(config), config["host"], int(config["port"]), conn.send, stop
        )

    try:
        asyncio.run(main())
    finally:
        conn.close()


class ServerThread:
    """Runs the simulator on its own event loop in a daemon thread.

    Args:
        state: The simulator's state (shared with the caller's thread).
        host: Interface to listen on.
        port: Port (0: a free one).
    """

    def __init__(self, state: State, host: str, port: int) -> None:
        self.state = state
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout: float) -> int:
        """Start serving; return the bound port."""
        self._thread = threading.Thread(target=self._run, name="fake-provider", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the fake provider did not start in time")
        if self._error is not None:
            raise RuntimeError(f"the fake provider failed to start: {self._error}")
        return self.port

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)

        def ready(port: int) -> None:
            self.port = port
            self._ready.set()

        async def main() -> None:
            self._stop = asyncio.Event()
            await serve_forever(self.state, self.host, self.port, ready, self._stop)

        try:
            loop.run_until_complete(main())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and join the thread."""
        loop, stop, thread = self._loop, self._stop, self._thread
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        if thread is not None:
            thread.join(timeout)
        self._thread = None
