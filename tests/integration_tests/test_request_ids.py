"""One acquire attempt, one reservation: a resent acquire (same request id) gets the first
grant back, on a real Redis server and cluster, also when a timeout made the store resend."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import redis
import redis.exceptions as rex

from conftest import make_keys
from rotating_llm import KeyManager
from rotating_llm.limiter import Reservation


def _held(km: KeyManager) -> int:
    return sum(u.rpm_count for u in km.limiter.usage("m").values())


def test_same_request_id_twice_is_one_reservation(
    manager_factory: Callable[..., KeyManager],
) -> None:
    km = manager_factory(make_keys(2, rpm=10))
    first = km.limiter.reserve("m", 50, request_id="attempt-1")
    again = km.limiter.reserve("m", 50, request_id="attempt-1")
    assert isinstance(first, Reservation)
    assert again == first  # identical grant: key, reservation id, day, instant
    assert _held(km) == 1
    assert km.limiter.usage("m")[first.key_id].tpm_used == 50


def test_different_request_ids_are_two_reservations(
    manager_factory: Callable[..., KeyManager],
) -> None:
    km = manager_factory(make_keys(2, rpm=10))
    a = km.limiter.reserve("m", 5, request_id="attempt-a")
    b = km.limiter.reserve("m", 5)  # a new id of its own
    c = km.limiter.reserve("m", 5)
    assert isinstance(a, Reservation) and isinstance(b, Reservation)
    assert isinstance(c, Reservation)
    assert len({(r.key_id, r.reservation_id) for r in (a, b, c)}) == 3
    assert _held(km) == 3


def test_release_then_settle_again_stays_idempotent(
    manager_factory: Callable[..., KeyManager],
) -> None:
    km = manager_factory(make_keys(1, rpm=10))
    res = km.limiter.reserve("m", 40, request_id="r.1")
    assert isinstance(res, Reservation)
    km.limiter.settle(res, "release", 0)
    km.limiter.settle(res, "release", 0)
    assert _held(km) == 0


def _fail_after_reply(real: Callable[..., Any], error: type[Exception]) -> Callable[..., Any]:
    """``read_response`` that reads the script's reply, then fails once as a connection
    reset after the script ran would (the store opens it again and sends once more)."""
    state = {"failed": False}

    def read(*args: Any, **kwargs: Any) -> Any:
        reply = real(*args, **kwargs)
        if not state["failed"]:
            state["failed"] = True
            raise error("Connection reset by peer")
        return reply

    return read


def test_sync_resend_after_a_reset_reserves_once(
    manager_factory: Callable[..., KeyManager], store_target: dict[str, Any]
) -> None:
    if store_target.get("redis_cluster"):
        pytest.skip("the cluster has no direct connection to resend on")
    km = manager_factory(make_keys(2, rpm=10))
    store = km.limiter.store.primary
    assert isinstance(km.limiter.reserve("m", 1), Reservation)  # opens this thread's conn
    assert store._direct is not None
    conn = store._direct._local.conn
    conn.read_response = _fail_after_reply(conn.read_response, redis.ConnectionError)
    res = km.limiter.reserve("m", 7)
    assert isinstance(res, Reservation)
    assert _held(km) == 2  # the warm-up and this one: the resend reserved nothing more
    assert km.limiter.usage("m")[res.key_id].tpm_used >= 7
    assert sum(u.tpm_used for u in km.limiter.usage("m").values()) == 8


def test_async_resend_after_a_timeout_reserves_once(
    manager_factory: Callable[..., KeyManager], store_target: dict[str, Any]
) -> None:
    if store_target.get("redis_cluster"):
        pytest.skip("the cluster has no pipelined connection to resend on")
    km = manager_factory(make_keys(2, rpm=10))

    async def main() -> Reservation:
        assert isinstance(await km.limiter.areserve("m", 1), Reservation)
        store = km.limiter.store.primary
        direct = store._adirect[asyncio.get_running_loop()]
        conn = direct._conn
        real = conn.read_response
        state = {"failed": False}

        async def read(*args: Any, **kwargs: Any) -> Any:
            reply = await real(*args, **kwargs)
            if not state["failed"]:
                state["failed"] = True
                raise rex.TimeoutError("Timeout reading from socket")
            return reply

        conn.read_response = read
        res = await km.limiter.areserve("m", 7)
        assert isinstance(res, Reservation)
        await km.limiter.aclose()
        await store.aclose()
        return res

    asyncio.run(main())
    assert _held(km) == 2
    assert sum(u.tpm_used for u in km.limiter.usage("m").values()) == 8


def test_a_cancelled_acquire_releases_its_grant(
    manager_factory: Callable[..., KeyManager], store_target: dict[str, Any]
) -> None:
    if store_target.get("redis_cluster"):
        pytest.skip("no stall to inject on the cluster's connections")
    km = manager_factory(make_keys(2, rpm=10))

    async def main() -> None:
        warm = await km.limiter.areserve("m", 1)  # loads the scripts, opens the connection
        assert isinstance(warm, Reservation)
        await km.limiter.asettle(warm, "release", 0)
        conn = km.limiter.store.primary._adirect[asyncio.get_running_loop()]._conn
        real = conn.read_response

        async def slow(*args: Any, **kwargs: Any) -> Any:  # hold the reply back: a stall
            await asyncio.sleep(0.2)
            return await real(*args, **kwargs)

        conn.read_response = slow
        task = asyncio.ensure_future(km.aacquire("m", 9))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await km.limiter.aflush()  # waits for the release of what it was granted
        await km.limiter.aclose()
        await km.limiter.store.primary.aclose()

    asyncio.run(main())
    assert _held(km) == 0
    assert sum(u.tpm_used for u in km.limiter.usage("m").values()) == 0
