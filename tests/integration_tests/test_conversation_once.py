"""Conversations under contention on the real Redis: one system prompt however many
processes open a conversation together, and a turn resent after a lost acknowledgement
(a socket timeout after Redis wrote it) stored once."""

from __future__ import annotations

import contextlib
import multiprocessing
import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from _conv_workers import SYSTEM, open_and_write
from redis.backoff import NoBackoff
from redis.retry import Retry

from rotating_llm import Settings, StoreUnavailableError
from rotating_llm.conversation import ConversationStore, make_message
from rotating_llm.storage import Store

pytestmark = pytest.mark.redis

PROCESSES = 20


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}:"


@pytest.mark.multiprocess
@pytest.mark.slow
def test_twenty_processes_opening_one_conversation_store_one_system_prompt(
    redis_url: str, prefix: str
) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    procs = [
        ctx.Process(target=open_and_write, args=(redis_url, prefix, "shared", w, barrier))
        for w in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
    assert [p.exitcode for p in procs] == [0] * PROCESSES
    store = ConversationStore(Settings(redis_url=redis_url, key_prefix=prefix))
    msgs = store.get_messages("shared")
    kinds = [m["type"] for m in msgs]
    assert kinds.count("system") == 1 and kinds[0] == "system"
    assert msgs[0]["data"]["content"] == SYSTEM
    assert len(msgs) == 1 + 2 * PROCESSES
    assert sorted(m["data"]["content"] for m in msgs[1::2]) == sorted(
        f"w{w}-q" for w in range(PROCESSES)
    )
    meta = store.get_metadata("shared")
    assert meta is not None and meta["turn_count"] == PROCESSES
    store.close()


class _ReplyDropper:
    """A loopback TCP proxy to Redis that can swallow the next reply Redis sends.

    The request reaches Redis and runs; only its acknowledgement is lost, so the client
    times out after the write.
    """

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.drop_next = threading.Event()
        self.dropped = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._socks: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self._socks += [client, server]
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, replies: bool) -> None:
        try:
            while chunk := src.recv(65536):
                if replies and self.drop_next.is_set():
                    self.drop_next.clear()
                    self.dropped += 1
                    continue
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        for s in self._socks:
            s.close()


@pytest.fixture
def dropper(redis_url: str) -> Iterator[_ReplyDropper]:
    parts = urlsplit(redis_url)
    proxy = _ReplyDropper(parts.hostname or "127.0.0.1", parts.port or 6379)
    yield proxy
    proxy.close()


def _store_via(
    proxy: _ReplyDropper, redis_url: str, prefix: str, retries: int
) -> ConversationStore:
    db = int(urlsplit(redis_url).path.strip("/") or 0)
    client: Any = redis.Redis(
        host="127.0.0.1",
        port=proxy.port,
        db=db,
        decode_responses=True,
        socket_timeout=0.5,
        retry=Retry(NoBackoff(), retries),
    )
    store = Store("redis", f"proxy:{proxy.port}", client, None, prefix)
    conv = ConversationStore(store=store, ttl_seconds=600)
    conv.append_turn("warm-up", [make_message("user", "hi")])  # script loaded, connected
    return conv


def _turn() -> list[dict[str, Any]]:
    return [make_message("user", "q"), make_message("assistant", "a")]


def test_driver_resend_after_a_lost_reply_stores_the_turn_once(
    dropper: _ReplyDropper, redis_url: str, prefix: str
) -> None:
    # redis-py resends a command that timed out; the default idempotency key (one per
    # call) makes that resend a no-op instead of a second copy of the turn.
    conv = _store_via(dropper, redis_url, prefix, retries=2)
    dropper.drop_next.set()
    assert conv.append_turn("lost", _turn(), system_message="sys", tokens=3) == 3
    assert dropper.dropped == 1
    direct = ConversationStore(Settings(redis_url=redis_url, key_prefix=prefix))
    assert [m["type"] for m in direct.get_messages("lost")] == ["system", "human", "ai"]
    meta = direct.get_metadata("lost")
    assert meta is not None and meta["turn_count"] == 1 and meta["total_tokens"] == 3
    direct.close()


def test_caller_resend_with_the_same_key_after_a_timeout_stores_the_turn_once(
    dropper: _ReplyDropper, redis_url: str, prefix: str
) -> None:
    conv = _store_via(dropper, redis_url, prefix, retries=0)
    dropper.drop_next.set()
    with pytest.raises(StoreUnavailableError, match="append_turn"):
        conv.append_turn("retry", _turn(), idempotency_key="turn-7")
    assert dropper.dropped == 1
    # the write happened although the caller saw a timeout; resending is safe
    assert conv.append_turn("retry", _turn(), idempotency_key="turn-7") == 2
    assert conv.append_turn("retry", _turn(), idempotency_key="turn-7") == 2
    assert [m["type"] for m in conv.get_messages("retry")] == ["human", "ai"]
