"""The async path: completions written on the loop's own connection without waiting, and
no event-loop iteration of aacquire/acomplete blocking longer than a socket write."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_keys, secrets_for
from rotating_llm import KeyManager, Settings
from rotating_llm.limiter._asettler import CLIENT_NAME
from rotating_llm.secrets import EnvSecretStore

pytestmark = pytest.mark.redis


def _manager(redis_url: str, prefix: str, **kw: object) -> KeyManager:
    keys = make_keys(2, rpm=10_000, tpm=10**9)
    return KeyManager(
        keys,
        settings=Settings(redis_url=redis_url, key_prefix=prefix, window_seconds=30, **kw),
        secret_store=EnvSecretStore(secrets_for(keys)),
    )


async def test_acomplete_returns_before_the_reply_and_is_applied(redis_url, prefix) -> None:
    km = _manager(redis_url, prefix)
    try:
        lease = await km.aacquire("m", 500)
        await lease.acomplete(120)
        assert km.limiter.pending_completions == 1  # written, its reply not read yet
        await km.limiter.aflush()
        assert km.limiter.pending_completions == 0
        assert km.limiter.get_tpm_usage(lease.key_id)["used"] == 120
    finally:
        await km.aclose()


async def test_many_concurrent_acompletes_are_all_applied(redis_url, prefix) -> None:
    km = _manager(redis_url, prefix)
    try:

        async def one(i: int) -> str:
            lease = await km.aacquire("m", 50)
            await lease.acomplete(i % 7)
            return lease.key_id

        used = await asyncio.gather(*(one(i) for i in range(300)))
        await km.limiter.aflush()
        total = sum(km.limiter.get_tpm_usage(k)["used"] for k in set(used))
        assert total == sum(i % 7 for i in range(300))
    finally:
        await km.aclose()


async def test_acomplete_reloads_a_flushed_script(redis_url, prefix) -> None:
    km = _manager(redis_url, prefix)
    try:
        await (await km.aacquire("m", 100)).acomplete(10)
        await km.limiter.aflush()
        km.store.primary.sync.script_flush()
        km.store.primary.sync.function_flush()
        lease = await km.aacquire("m", 300)
        await lease.acomplete(30)
        await km.limiter.aflush()
        used = sorted(km.limiter.get_tpm_usage(k)["used"] for k in ("k0", "k1"))
        assert sum(used) == 40
    finally:
        await km.aclose()


async def test_acompletes_are_sent_again_after_a_lost_connection(redis_url, prefix) -> None:
    km = _manager(redis_url, prefix)
    try:
        await (await km.aacquire("m", 400)).acomplete(40)
        await km.limiter.aflush()
        client = km.store.primary.sync
        for c in client.client_list():
            if c["name"] == CLIENT_NAME:  # the connection that carries completions
                client.client_kill_filter(_id=c["id"])
        await (await km.aacquire("m", 400)).acomplete(60)
        await km.limiter.aflush()
        assert sum(km.limiter.get_tpm_usage(k)["used"] for k in ("k0", "k1")) == 100
    finally:
        await km.aclose()


async def test_a_refusal_waits_for_this_loops_completions(redis_url, prefix) -> None:
    keys = make_keys(1, rpm=10_000, tpm=1_000)
    km = KeyManager(
        keys,
        settings=Settings(redis_url=redis_url, key_prefix=prefix, window_seconds=30),
        secret_store=EnvSecretStore(secrets_for(keys)),
    )
    try:
        lease = await km.aacquire("m", 900)
        await lease.acomplete(10)  # frees 890 tokens once applied
        again = await km.aacquire("m", 900, max_wait=0)
        assert again.key_id == "k0"
        await again.arelease()
    finally:
        await km.aclose()


@pytest.mark.multiprocess
def test_no_loop_iteration_of_the_async_path_blocks(redis_url, prefix) -> None:
    """No step of the loop running aacquire/acomplete blocks for more than 10 ms.

    Run in a process of its own: another thread of the test session holding the GIL would
    make the loop's thread wait, which is not the library blocking.
    """
    proc = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).with_name("_async_block_worker.py")),
            redis_url,
            prefix,
        ],
        capture_output=True,
        timeout=120,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["served"] == 1_000
    assert report["slow"] == []


async def test_concurrent_decisions_share_one_pipelined_connection(redis_url, prefix) -> None:
    km = _manager(redis_url, prefix)
    try:
        before = len(km.store.primary.sync.client_list())
        leases = await asyncio.gather(*(km.aacquire("m", 10) for _ in range(200)))
        assert len({(lease.key_id, lease.reservation.reservation_id) for lease in leases}) == 200
        # 200 decisions in flight at once: one connection for them (plus the client's own)
        assert len(km.store.primary.sync.client_list()) - before <= 2
        await asyncio.gather(*(lease.arelease() for lease in leases))
    finally:
        await km.aclose()


async def test_cancelled_callers_do_not_misalign_replies(redis_url, prefix) -> None:
    km = _manager(redis_url, prefix)
    try:
        await (await km.aacquire("m", 10)).arelease()
        tasks = [asyncio.ensure_future(km.aacquire("m", 10)) for _ in range(50)]
        await asyncio.sleep(0)
        for t in tasks[::3]:
            t.cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        granted = [d for d in done if not isinstance(d, BaseException)]
        ids = [(g.key_id, g.reservation.reservation_id) for g in granted]
        assert len(ids) == len(set(ids)) >= 30  # each caller got its own reply
        for lease in granted:
            await lease.arelease()
        status = km.get_all_key_statuses()  # cancelled ones may have reserved: never more
        assert sum(s["rpm_usage"] for s in status) <= 50 - len(granted)
    finally:
        await km.aclose()


async def test_a_killed_decision_connection_is_replaced(redis_url, prefix) -> None:
    km = _manager(redis_url, prefix)
    try:
        await (await km.aacquire("m", 10)).arelease()
        km.store.primary.sync.client_kill_filter(_type="normal", skipme=True)
        leases = await asyncio.gather(*(km.aacquire("m", 10) for _ in range(20)))
        assert len({(lease.key_id, lease.reservation.reservation_id) for lease in leases}) == 20
        for lease in leases:
            await lease.arelease()
    finally:
        await km.aclose()


async def test_writes_reach_the_socket_without_a_task_per_command(redis_url, prefix) -> None:
    """A decision's and a completion's write is made by the caller itself, in order: no
    task per write (redis-py wraps a write in ``wait_for`` when its connection has a socket
    timeout, which redis-py 8 gives every connection by default)."""
    km = _manager(redis_url, prefix)
    loop = asyncio.get_running_loop()
    writes: list[str] = []
    default = loop.get_task_factory()

    def factory(lp: asyncio.AbstractEventLoop, coro: object, **kw: object) -> asyncio.Task[object]:
        name = getattr(coro, "__qualname__", "")
        if "send_packed_command" in name:
            writes.append(name)
        if default is not None:
            return default(lp, coro, **kw)  # type: ignore[arg-type]
        return asyncio.Task(coro, loop=lp, **kw)  # type: ignore[arg-type]

    try:
        await (await km.aacquire("m", 10)).acomplete(5)  # connections made
        await km.limiter.aflush()
        loop.set_task_factory(factory)
        for _ in range(20):
            await (await km.aacquire("m", 10)).acomplete(5)
        await km.limiter.aflush()
    finally:
        loop.set_task_factory(default)
        await km.aclose()
    assert writes == []


async def test_a_server_that_accepts_but_never_answers_times_the_handshake_out() -> None:
    import redis.asyncio as aredis
    import redis.exceptions as rex

    from rotating_llm.storage._adirect import connect_within

    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # reads nothing, answers nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    conn = aredis.Connection(host="127.0.0.1", port=port, socket_timeout=None)
    try:
        with pytest.raises(rex.TimeoutError, match=r"within 0\.3s"):
            await connect_within(conn, 0.3)
        assert accepted  # the TCP connection was made: it is the handshake that waited
    finally:
        for w in accepted:
            w.close()
        server.close()
        await server.wait_closed()


async def test_a_handshake_cancelled_midway_leaves_no_half_open_connection() -> None:
    """(redis-py 8.1 closes it itself; ``connect_within`` makes sure of it whatever the
    version, since a half-open connection would hand its handshake replies to the next
    caller.)"""
    import redis.asyncio as aredis

    from rotating_llm.storage._adirect import connect_within

    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    # a client name: the handshake sends CLIENT SETNAME and awaits its reply
    conn = aredis.Connection(host="127.0.0.1", port=port, socket_timeout=None, client_name="t")
    try:
        task = asyncio.ensure_future(connect_within(conn, 30))
        while not accepted:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # the handshake was written, its reply is awaited
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not conn.is_connected  # the next caller connects anew, no stale replies
    finally:
        for w in accepted:
            w.close()
        server.close()
        await server.wait_closed()
