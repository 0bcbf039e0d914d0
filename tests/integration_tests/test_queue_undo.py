"""A queued caller that fails at any step leaves the queue, and a closed manager leaves
no subscriber behind (issue #15 item 1, review findings)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from conftest import make_keys
from rotating_llm.limiter import _queue

pytestmark = [pytest.mark.redis]


def _queue_size(km: Any) -> int:
    client = km.limiter.store.primary.sync
    return int(client.zcard(f"{km.settings.key_prefix}v3:{{m}}:q"))


def _full(manager_factory: Any) -> tuple[Any, Any]:
    km = manager_factory(make_keys(1, rpm=1), window_seconds=30.0, queue_ticket_seconds=30.0)
    return km, km.acquire("m", 1)


def test_a_subscriber_that_cannot_start_leaves_no_ticket(manager_factory, monkeypatch) -> None:
    km, held = _full(manager_factory)

    def fail(self: Any) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(_queue._Subscriber, "start", fail)
    with pytest.raises(RuntimeError):
        km.acquire("m", 1, max_wait=60)
    # neither the ticket (30 s) nor the local slot is left behind
    assert _queue_size(km) == 0
    assert km.limiter.waiters.waiting == 0
    held.release()


async def test_an_async_listen_that_fails_leaves_no_ticket(manager_factory, monkeypatch) -> None:
    km, held = _full(manager_factory)

    async def fail(*args: Any, **kwargs: Any) -> None:
        raise OSError("subscriber lost")

    monkeypatch.setattr(km.limiter, "alisten", fail)
    with pytest.raises(OSError):
        await km.aacquire("m", 1, max_wait=60)
    assert _queue_size(km) == 0
    assert km.limiter.waiters.waiting == 0
    await held.arelease()


@pytest.mark.slow
def test_a_reserve_that_fails_while_queued_leaves_no_ticket(manager_factory, monkeypatch) -> None:
    km, held = _full(manager_factory)
    reserve, calls = km.limiter.reserve, [0]

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == 2:  # (an error that is not the store's)
            raise ValueError("unexpected reply")
        return reserve(*args, **kwargs)

    monkeypatch.setattr(km.limiter, "reserve", flaky)
    with pytest.raises(ValueError):
        km.acquire("m", 1, max_wait=60)
    assert calls[0] == 2
    assert _queue_size(km) == 0
    assert km.limiter.waiters.waiting == 0
    held.release()


def test_close_stops_the_subscriber_and_starts_none_after(manager_factory) -> None:
    km, held = _full(manager_factory)
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(km.acquire("m", 1, max_wait=60)))
    waiter.start()
    while _queue_size(km) < 1 or not km.limiter.waiters._subs:  # (queued, then listens)
        time.sleep(0.005)
    subs = list(km.limiter.waiters._subs.values())
    assert len(subs) == 1 and subs[0].alive()
    held.release()
    waiter.join()
    got[0].release()
    km.close()
    assert not subs[0].alive()  # joined by close, not left for its idle timeout
    store = km.limiter.store.primary
    assert km.limiter.waiters.listen(store, "m", "t" * 24) is None
    assert not km.limiter.waiters._subs


def test_a_waiter_arriving_as_the_subscriber_retires_gets_one(manager_factory) -> None:
    km = manager_factory(make_keys(1, rpm=1), window_seconds=30.0)
    waiters, store = km.limiter.waiters, km.limiter.store.primary
    waiters.listen(store, "m", "a" * 24)
    sub = waiters._subs[id(store)]
    waiters.forget("a" * 24)
    # the idle subscriber decides to end under the lock a waiter registers under
    assert waiters.retire(sub)
    waiters.listen(store, "m", "b" * 24)  # (sub may still be alive: a new one is made)
    new = waiters._subs[id(store)]
    assert new is not sub and new.alive()
    waiters.forget("b" * 24)
    km.close()
    assert not new.alive()
