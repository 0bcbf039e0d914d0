"""A cluster call's caller tells slow from lost as a single server's does, without a
network: a call that hits the client's own socket timeout is sent once more while the
probe answers, and fails over (``LostError``) once the probe is silent past
``store_lost_after``; past the deadline it is ``StoreTimeoutError``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
import redis.exceptions as rex

from rotating_llm import StoreTimeoutError
from rotating_llm.storage._cluster_bound import ClusterBound
from rotating_llm.storage._direct import LostError
from rotating_llm.storage._timing import Liveness, Timing


def _bound(probe_error: type[Exception] | None, lost_after: float) -> ClusterBound:
    def probe(timeout: float) -> None:
        if probe_error is not None:
            raise probe_error("probe")

    return ClusterBound("test", Liveness(probe, Timing(lost_after=lost_after)))


def _times_out_then(value: str, times: int) -> tuple[Callable[[], str], list[int]]:
    """A call that raises the client's socket timeout ``times`` times, then answers."""
    calls: list[int] = []

    def call() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise rex.TimeoutError("Timeout reading from socket")
        return value

    return call, calls


def test_a_socket_timeout_on_a_slow_cluster_is_sent_again_not_failed_over() -> None:
    bound = _bound(None, lost_after=0.2)  # the probe answers: slow, however long
    call, calls = _times_out_then("ok", 2)
    try:
        assert bound.run(call, time.monotonic() + 5) == "ok"
    finally:
        bound.close()
    assert len(calls) == 3


def test_a_socket_timeout_on_a_silent_cluster_is_lost() -> None:
    bound = _bound(rex.TimeoutError, lost_after=0.2)

    def call() -> str:
        time.sleep(0.1)
        raise rex.TimeoutError("Timeout reading from socket")

    try:
        with pytest.raises(LostError, match="no answer to a probe"):
            bound.run(call, time.monotonic() + 5)
    finally:
        bound.close()


def test_a_refused_probe_fails_a_waiting_call_over_at_once() -> None:
    bound = _bound(rex.ConnectionError, lost_after=60)
    try:
        with pytest.raises(LostError, match="refused"):
            bound.run(lambda: time.sleep(2), time.monotonic() + 5)
    finally:
        bound.close()


def test_past_the_deadline_a_slow_cluster_is_a_store_timeout() -> None:
    bound = _bound(None, lost_after=60)
    try:
        with pytest.raises(StoreTimeoutError):
            bound.run(lambda: time.sleep(1), time.monotonic() + 0.3)
    finally:
        bound.close()


def test_async_twin_sends_again_and_fails_over_alike() -> None:
    slow = _bound(None, lost_after=0.2)
    silent = _bound(rex.TimeoutError, lost_after=0.2)
    call, calls = _times_out_then("ok", 2)

    async def once() -> str:
        return call()

    async def never() -> str:
        await asyncio.sleep(0.1)
        raise rex.TimeoutError("Timeout reading from socket")

    async def main() -> None:
        assert await slow.arun(once, time.monotonic() + 5) == "ok"
        with pytest.raises(LostError):
            await silent.arun(never, time.monotonic() + 5)
        with pytest.raises(StoreTimeoutError):
            await slow.arun(lambda: asyncio.sleep(1), time.monotonic() + 0.3)

    try:
        asyncio.run(main())
    finally:
        slow.close()
        silent.close()
    assert len(calls) == 3


class _Node:
    def __init__(self, client: object) -> None:
        self.redis_connection = client


class _Cluster:
    def __init__(self, clients: list[object]) -> None:
        self._nodes = [_Node(c) for c in clients]

    def get_primaries(self) -> list[_Node]:
        return self._nodes


def test_every_primary_is_probed_with_the_whole_timeout(monkeypatch) -> None:
    """Three primaries that each take 40 ms to answer, a probe of 60 ms: all answer (review
    finding: asked one after another, the third got what the others left, nothing, and
    counted as silent); one that refuses is named refused, one that is silent, silent."""
    import rotating_llm.storage._cluster_bound as cb

    asked: list[float] = []

    def ping(client: str, timeout: float) -> None:
        asked.append(timeout)
        if client == "refuses":
            raise rex.ConnectionError("refused")
        if timeout < 0.04:
            time.sleep(max(0.0, timeout))
            raise rex.TimeoutError("silent")
        time.sleep(0.04)
        if client == "silent":
            raise rex.TimeoutError("silent")

    monkeypatch.setattr(cb, "ping_fresh", ping)
    cb.ping_primaries(_Cluster(["a", "b", "c"]), 0.06)
    assert asked == [0.06, 0.06, 0.06]
    with pytest.raises(rex.TimeoutError):
        cb.ping_primaries(_Cluster(["a", "silent", "c"]), 0.06)
    with pytest.raises(rex.ConnectionError):
        cb.ping_primaries(_Cluster(["silent", "refuses", "c"]), 0.06)
