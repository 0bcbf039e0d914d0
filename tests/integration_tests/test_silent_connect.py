"""A Redis that accepts no connection, or accepts and never answers the handshake, is
found lost by a caller whose every call ends by its deadline, sync and async (found by
review: a connect that used the whole deadline left no time to count the silence, so
such a Redis was never declared lost and every call refused forever)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio as aredis

from rotating_llm.errors import StoreTimeoutError
from rotating_llm.storage._adirect import LoopConnection
from rotating_llm.storage._direct import DirectConnections, LostError, ping_fresh
from rotating_llm.storage._timing import Liveness, Timing, call_deadline

DEADLINE = 0.5
SLACK = 0.25  # a loaded machine's scheduling, as in the chaos table
TIMING = Timing(deadline=DEADLINE, lost_after=1.0)


@pytest.fixture(params=["no_handshake", "no_accept"])
def silent_port(request: pytest.FixtureRequest) -> Iterator[int]:
    """A port whose server is silent: it accepts (the kernel does) but never answers, or
    its backlog is full so that a connect gets no answer at all."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    fill: list[socket.socket] = []
    if request.param == "no_handshake":
        srv.listen(128)
    else:
        srv.listen(0)
        for _ in range(3):
            s = socket.socket()
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.connect(srv.getsockname())
            fill.append(s)
        time.sleep(0.1)
    try:
        yield srv.getsockname()[1]
    finally:
        for s in fill:
            s.close()
        srv.close()


def _outcomes(call: object, calls: int = 12) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    for _ in range(calls):
        start = time.monotonic()
        with call_deadline(start + DEADLINE):
            try:
                call()  # type: ignore[operator]
                name = "ok"
            except (LostError, StoreTimeoutError) as exc:
                name = type(exc).__name__
        out.append((name, time.monotonic() - start))
        if name == "LostError":
            break
    return out


def _check(out: list[tuple[str, float]]) -> None:
    names = [n for n, _ in out]
    assert "ok" not in names
    # lost after lost_after (1 s) of silence: by the 4th call of 0.5 s, not never
    assert names[-1] == "LostError", names
    assert len(names) <= 5, names
    assert max(t for _, t in out) <= DEADLINE + SLACK, out


def test_sync_caller_finds_a_silent_redis_lost_within_deadlines(silent_port: int) -> None:
    client = redis.Redis(port=silent_port, socket_connect_timeout=2.0)
    live = Liveness(lambda t: ping_fresh(client, t), TIMING)
    conns = DirectConnections(client, live, "silent")
    try:
        _check(_outcomes(lambda: conns.execute("PING")))
    finally:
        conns.close()


def test_async_caller_finds_a_silent_redis_lost_within_deadlines(silent_port: int) -> None:
    sync = redis.Redis(port=silent_port, socket_connect_timeout=2.0)
    live = Liveness(lambda t: ping_fresh(sync, t), TIMING)
    loop = asyncio.new_event_loop()
    try:
        conn = LoopConnection(aredis.Redis(port=silent_port), live, "silent")
        # each call a task of its own on one loop, under the deadline set around it
        _check(_outcomes(lambda: loop.run_until_complete(conn.execute("PING"))))
    finally:
        loop.close()
