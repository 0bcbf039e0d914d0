"""The conversation store on the real Redis: atomic turns under concurrency, TTL, layout."""

from __future__ import annotations

import multiprocessing
import os
import threading
import uuid

import pytest
from redis.crc import key_slot

from rotating_llm import Settings
from rotating_llm.conversation import ConversationStore, make_message

pytestmark = pytest.mark.redis

WRITERS = 50
TURNS = 4


def _settings(prefix: str, **kw: object) -> Settings:
    url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    return Settings(redis_url=url, key_prefix=prefix, **kw)  # type: ignore[arg-type]


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def store(prefix: str) -> ConversationStore:
    s = ConversationStore(_settings(prefix, conversation_ttl_seconds=1000))
    yield s  # type: ignore[misc]
    s.close()


def _write_turns(prefix: str, conv_id: str, writer: int) -> None:
    s = ConversationStore(_settings(prefix))
    try:
        for turn in range(TURNS):
            s.append_turn(
                conv_id,
                [
                    make_message("user", f"w{writer}-t{turn}-q"),
                    make_message("assistant", f"w{writer}-t{turn}-a"),
                ],
                tokens=1,
                key_id=f"k{writer}",
            )
    finally:
        s.close()


def _check_whole_turns(store: ConversationStore, conv_id: str, writers: int) -> None:
    msgs = [m["data"]["content"] for m in store.get_messages(conv_id)]
    assert len(msgs) == writers * TURNS * 2
    for q, a in zip(msgs[::2], msgs[1::2], strict=True):  # a turn is never split
        assert q.endswith("-q") and a == q[:-1] + "a"
    for w in range(writers):  # each writer's turns are in its own order
        mine = [m for m in msgs[::2] if m.startswith(f"w{w}-")]
        assert mine == [f"w{w}-t{t}-q" for t in range(TURNS)]
    meta = store.get_metadata(conv_id)
    assert meta is not None
    assert meta["message_count"] == len(msgs)
    assert meta["total_tokens"] == meta["turn_count"] == writers * TURNS


def test_fifty_threads_lose_nothing(store: ConversationStore, prefix: str) -> None:
    threads = [
        threading.Thread(target=_write_turns, args=(prefix, "busy", w)) for w in range(WRITERS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _check_whole_turns(store, "busy", WRITERS)


@pytest.mark.multiprocess
@pytest.mark.slow
def test_fifty_processes_lose_nothing(store: ConversationStore, prefix: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_turns, args=(prefix, "many", w)) for w in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * WRITERS
    _check_whole_turns(store, "many", WRITERS)


def test_ttl_is_refreshed_on_every_write(store: ConversationStore) -> None:
    store.append_turn("t", [make_message("user", "hi")])
    msgs_key, meta_key = store.keys_for("t")
    raw = store.store.sync
    assert 0 < raw.ttl(msgs_key) <= 1000 and 0 < raw.ttl(meta_key) <= 1000
    raw.expire(msgs_key, 5)
    raw.expire(meta_key, 5)
    store.append_turn("t", [make_message("assistant", "yo")])
    assert raw.ttl(msgs_key) > 5 and raw.ttl(meta_key) > 5
    raw.expire(msgs_key, 5)
    store.truncate("t", 1)
    assert raw.ttl(msgs_key) > 5


def test_conversation_ttl_comes_from_the_environment(prefix: str) -> None:
    s = ConversationStore(Settings.from_env({"CONVERSATION_TTL_SECONDS": "77"}, key_prefix=prefix))
    assert s.ttl_seconds == 77
    s.close()


def test_both_keys_live_on_one_cluster_slot(store: ConversationStore) -> None:
    for conv in ("a", "user:42", "orchestrator_wf-17"):
        msgs, meta = store.keys_for(conv)
        assert key_slot(msgs.encode()) == key_slot(meta.encode())
        assert msgs.startswith(store.store.prefix + "conv:messages:")


def test_plain_redis_types(store: ConversationStore) -> None:
    store.append_turn("p", [make_message("user", "hi")], model="m", key_id="k")
    msgs, meta = store.keys_for("p")
    assert store.store.sync.type(msgs) == "list"
    assert store.store.sync.type(meta) == "hash"


def test_unreachable_redis_is_a_store_error(prefix: str) -> None:
    from rotating_llm import StoreUnavailableError

    s = ConversationStore(Settings(redis_url="redis://127.0.0.1:1/0", key_prefix=prefix))
    with pytest.raises(StoreUnavailableError, match="append_turn"):
        s.append_turn("x", [make_message("user", "hi")])
    report = s.health_check()
    assert report["healthy"] is False and "error" in report


async def test_async_writers_lose_nothing(prefix: str) -> None:
    import asyncio

    s = ConversationStore(_settings(prefix))

    async def writer(w: int) -> None:
        for turn in range(TURNS):
            await s.aappend_turn(
                "async",
                [
                    make_message("user", f"w{w}-t{turn}-q"),
                    make_message("assistant", f"w{w}-t{turn}-a"),
                ],
                tokens=1,
            )

    await asyncio.gather(*(writer(w) for w in range(WRITERS)))
    _check_whole_turns(s, "async", WRITERS)
    await s.aclose()
    s.close()
