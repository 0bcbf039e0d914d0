"""The queue's turns on a real Redis, ticket by ticket: a grant without a ticket costs
its tenant a round, a ticket leaving never lets its tenant's later ones pass its earlier
ones, and a refusal behind the head says so (issue #15 item 1)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from _redis_server import RedisProcess

from conftest import make_keys, secrets_for
from rotating_llm import AllKeysExhaustedError, KeyManager, QuotaGroup, Settings
from rotating_llm.limiter import Refusal, Reservation
from rotating_llm.limiter._queue import new_ticket
from rotating_llm.secrets import EnvSecretStore

pytestmark = [pytest.mark.redis]


def _full(manager_factory: Any) -> tuple[Any, Reservation]:
    """A pool of one key with one request a window (30 s), that request held."""
    km = manager_factory(make_keys(1, rpm=1), window_seconds=30.0)
    held = km.limiter.reserve("m", 1)
    assert isinstance(held, Reservation)
    return km, held


def _queue(km: Any, tenant: str | None, ticket: str | None = None) -> tuple[str, int]:
    """A refusal that takes (or renews) ``ticket`` for 30 s: the ticket and its position."""
    ticket = ticket or new_ticket()
    out = km.limiter.reserve("m", 1, tenant=tenant, ticket=ticket, ticket_seconds=30.0)
    assert isinstance(out, Refusal) and out.position is not None
    return ticket, out.position


def _serve(km: Any, ticket: str, tenant: str | None) -> None:
    """The ticket's grant (the slot free), released at once."""
    out = km.limiter.reserve("m", 1, tenant=tenant, ticket=ticket, ticket_seconds=30.0)
    assert isinstance(out, Reservation)
    km.limiter.settle(out, "release", 0)


def _order(km: Any) -> list[str]:
    client = km.limiter.store.primary.sync
    members = client.zrange(f"{km.settings.key_prefix}v3:{{m}}:q", 0, -1)
    return [str(m)[12:] for m in members]


def test_a_grant_without_a_ticket_costs_its_tenant_a_round(manager_factory) -> None:
    km, held = _full(manager_factory)
    b1, _ = _queue(km, "b")
    b2, _ = _queue(km, "b")  # b's second turn: round 2
    km.limiter.settle(held, "release", 0)
    _serve(km, b1, "b")  # round 1 served; b2 is the head, in round 2
    # a newcomer of tenant a, not waiting, takes round 1 (a had no turn in it)...
    first = km.limiter.reserve("m", 1, tenant="a")
    assert isinstance(first, Reservation)
    km.limiter.settle(first, "release", 0)
    # ...and is charged for it: its next request comes after b's head, in round 2
    second = km.limiter.reserve("m", 1, tenant="a")
    assert isinstance(second, Refusal)
    assert second.reasons == {"k0": "queued behind 1"}
    _serve(km, b2, "b")
    assert _order(km) == []


def test_a_grant_without_a_ticket_in_another_priority_class_costs_no_round(
    manager_factory,
) -> None:
    km, held = _full(manager_factory)
    b1, _ = _queue(km, "b")
    km.limiter.settle(held, "release", 0)
    for _ in range(3):  # a higher priority than every waiter passes them, uncharged
        out = km.limiter.reserve("m", 1, tenant="a", priority=5)
        assert isinstance(out, Reservation)
        km.limiter.settle(out, "release", 0)
    held = km.limiter.reserve("m", 1, tenant="x", priority=7)
    assert isinstance(held, Reservation)
    # a's first ticket of priority 5 is in that class's first round, with x's
    a1 = new_ticket()
    out = km.limiter.reserve("m", 1, tenant="a", priority=5, ticket=a1, ticket_seconds=30.0)
    assert isinstance(out, Refusal) and out.position == 0
    x1 = new_ticket()
    out = km.limiter.reserve("m", 1, tenant="x", priority=5, ticket=x1, ticket_seconds=30.0)
    assert isinstance(out, Refusal) and out.position == 1
    assert _order(km) == [a1, x1, b1]


def test_a_tenants_later_ticket_never_passes_its_earlier_ones(manager_factory) -> None:
    km, _held = _full(manager_factory)
    a1, _ = _queue(km, "a")
    a2, _ = _queue(km, "a")
    a3, _ = _queue(km, "a")
    km.limiter.leave("m", a3)  # a's newest leaves; a1 and a2 still wait
    a4, pos = _queue(km, "a")
    assert pos == 2
    assert _order(km) == [a1, a2, a4]


def test_tenants_alternate_after_a_tickets_in_the_middle_leave(manager_factory) -> None:
    km, _held = _full(manager_factory)
    a = [_queue(km, "a")[0] for _ in range(3)]
    b = [_queue(km, "b")[0] for _ in range(4)]
    km.limiter.leave("m", a[2])  # a's rounds 3 and then 2 left
    km.limiter.leave("m", a[1])
    a4, _ = _queue(km, "a")  # a's next ticket: round 2, after its round 1
    a5, _ = _queue(km, "a")
    assert _order(km) == [a[0], b[0], b[1], a4, b[2], a5, b[3]]


def test_a_tenant_whose_tickets_all_left_starts_where_it_was_served(manager_factory) -> None:
    km, held = _full(manager_factory)
    b = [_queue(km, "b")[0] for _ in range(3)]
    a1, _ = _queue(km, "a")
    km.limiter.settle(held, "release", 0)
    _serve(km, b[0], "b")  # round 1: b served, a1 waits (b arrived first)
    _serve(km, a1, "a")  # a served in round 1
    a2, _ = _queue(km, "a")  # round 2
    a3, _ = _queue(km, "a")  # round 3
    km.limiter.leave("m", a3)
    km.limiter.leave("m", a2)
    # a's next ticket: round 2 (a was served in round 1; its rounds 2 and 3 were given up)
    a4, _ = _queue(km, "a")
    assert _order(km) == [b[1], a4, b[2]]


def test_a_refusal_behind_the_head_says_so(manager_factory) -> None:
    km, held = _full(manager_factory)
    head, _ = _queue(km, None)  # a ticket whose owner does not come back yet
    km.limiter.settle(held, "release", 0)  # the slot is free, held for the head
    with pytest.raises(AllKeysExhaustedError) as caught:
        km.acquire("m", 1, max_wait=0)
    err = caught.value
    assert err.queue_position == 1
    assert err.reasons == {"k0": "queued behind 1"}
    assert "k0: queued behind 1" in str(err)
    assert "1 ahead in the queue" in str(err)
    _serve(km, head, None)


@pytest.fixture
def server() -> Iterator[RedisProcess]:
    srv = RedisProcess()
    srv.start()
    yield srv
    srv.stop()


@pytest.mark.parametrize("call", ["leave", "aleave", "health", "ahealth", "group"])
def test_on_redis_lost_a_turn_given_up_wakes_the_waiters_of_the_fallback(
    server: RedisProcess, call: str
) -> None:
    keys = make_keys(1, rpm=1, quota_group="g")
    settings = Settings(
        redis_url=server.url, store_retry_interval=0.05, window_seconds=30.0, max_wait=0
    )
    km = KeyManager(
        keys,
        quota_groups=[QuotaGroup(group_id="g", rpm=1)],
        settings=settings,
        secret_store=EnvSecretStore(secrets_for(keys)),
    )
    server.stop()  # Redis lost: the in-process store (the default "local" mode) serves
    held = km.limiter.reserve("m", 1)
    assert isinstance(held, Reservation) and held.store.is_embedded
    head, _ = _queue(km, None)
    behind, pos = _queue(km, None)
    assert pos == 1
    km.limiter.waiters.listen(held.store, "m", behind)  # (the waiter behind, in process)
    if call == "leave":
        km.limiter.leave("m", head)  # the head gives up: the next one's turn
    elif call == "aleave":
        asyncio.run(km.limiter.aleave("m", head))
    elif call == "health":
        km.limiter.health("k0", "enable")
    elif call == "ahealth":
        asyncio.run(km.limiter.ahealth("k0", "enable"))
    else:
        km.limiter.group_health("g", "clear")  # a group's cooldown cleared
    assert km.limiter.waiters.wait(behind, 0)  # woken (no subscriber on this store)
    km.close()


def _subscribed(km: Any) -> Any:
    """A subscription to pool m's queue channel (the signals of whose turn it is)."""
    sub = km.limiter.store.primary.sync.pubsub(ignore_subscribe_messages=True)
    sub.subscribe(f"{km.settings.key_prefix}v3:{{m}}:q")
    return sub


def _signalled(sub: Any, within: float = 10.0) -> list[str]:
    """The tickets signalled until ``within`` seconds pass without a signal."""
    out: list[str] = []
    end = time.monotonic() + within
    while time.monotonic() < end:
        msg = sub.get_message(timeout=0.1)
        if msg is not None and msg["type"] == "message":
            out.append(str(msg["data"]))
            end = time.monotonic() + 0.5
    sub.close()
    return out


def test_a_caller_that_finds_room_held_for_the_head_signals_it(manager_factory) -> None:
    km, held = _full(manager_factory)
    head, _ = _queue(km, None)
    km.limiter.settle(held, "release", 0)  # (signals the head, before the subscription)
    sub = _subscribed(km)
    out = km.limiter.reserve("m", 1)  # the head did not come: room came back unannounced
    assert isinstance(out, Refusal) and out.reasons == {"k0": "queued behind 1"}
    assert _signalled(sub, 5.0) == [head]


def test_limits_registered_again_signal_the_head(manager_factory) -> None:
    km, _held = _full(manager_factory)
    head, _ = _queue(km, None)
    sub = _subscribed(km)
    # another process registers the pool with more room (a keys file reloaded; the
    # same path drops a learned limit that expired)
    other = manager_factory(make_keys(1, rpm=2), window_seconds=30.0)
    other.limiter.register_all()
    assert _signalled(sub, 5.0) == [head]
    _serve(km, head, None)


def test_a_head_waiting_on_a_group_cooldown_is_told_when_it_ends(make) -> None:
    keys = make_keys(2, rpm=10, quota_group="g")
    km = make(keys, [QuotaGroup(group_id="g", rpm=10)], window_seconds=30.0)
    km.limiter.reserve("m", 1)  # (registered)
    km.limiter.cool_group("g", 2.0, "test")
    ticket = new_ticket()
    out = km.limiter.reserve("m", 1, ticket=ticket, ticket_seconds=30.0)
    # the head sleeps until the cooldown ends (Redis's clock), not a window
    assert isinstance(out, Refusal) and out.position == 0
    assert out.retry_after is not None and 0 < out.retry_after <= 2.0


def test_a_large_head_passed_often_enough_gets_the_room_held(manager_factory) -> None:
    from rotating_llm.limiter._schema import QUEUE_PASSES

    km = manager_factory(make_keys(1, rpm=100, tpm=100), window_seconds=30.0)
    held = km.limiter.reserve("m", 50)
    assert isinstance(held, Reservation)
    head = new_ticket()  # 100 tokens: it fits only once the 50 held come back
    out = km.limiter.reserve("m", 100, ticket=head, ticket_seconds=30.0)
    assert isinstance(out, Refusal) and out.position == 0
    small = []
    for _ in range(QUEUE_PASSES):  # small requests pass it on room it cannot use...
        got = km.limiter.reserve("m", 1)
        assert isinstance(got, Reservation)
        small.append(got)
    out = km.limiter.reserve("m", 1)  # ...until it has been passed enough
    assert isinstance(out, Refusal) and out.reasons == {"k0": "queued behind 1"}
    for res in [held, *small]:
        km.limiter.settle(res, "release", 0)
    served = km.limiter.reserve("m", 100, ticket=head, ticket_seconds=30.0)
    assert isinstance(served, Reservation)
    km.limiter.settle(served, "release", 0)
    got = km.limiter.reserve("m", 1)  # the next head (none) is not held for
    assert isinstance(got, Reservation)
