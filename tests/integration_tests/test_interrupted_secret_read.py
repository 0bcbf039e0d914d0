"""A caller that gives up while it is granted a key leaves no reservation behind.

The acquire flow reserves, then reads the granted key's secret. A ``KeyboardInterrupt``
during a sync read releases the grant before it goes on; a task cancelled during an
async read has its grant released in the background (``aflush`` waits for it). An
interrupt during the sync decision itself (the script ran, its reply not read) has the
same request resent and its grant released, as a timeout does.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
from _stalls import Unready

from conftest import make_keys, secrets_for
from rotating_llm import KeyManager, Settings

pytestmark = pytest.mark.redis


def _manager(redis_url: str, prefix: str) -> tuple[KeyManager, Unready]:
    keys = make_keys(2, rpm=100, tpm=10_000)
    store = Unready(secrets_for(keys))
    km = KeyManager(
        keys,
        settings=Settings(redis_url=redis_url, key_prefix=prefix, window_seconds=30),
        secret_store=store,
        probe=False,
    )
    return km, store


def _held(km: KeyManager) -> tuple[int, int]:
    """(requests, tokens) reserved or used on the pool's keys now."""
    status = km.get_all_key_statuses()
    return sum(s["rpm_usage"] for s in status), sum(s["tpm_usage"] for s in status)


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_an_interrupted_sync_secret_read_releases_the_grant(
    redis_url: str, prefix: str, interrupt: type[BaseException]
) -> None:
    km, store = _manager(redis_url, prefix)
    try:
        store.interrupt = interrupt()
        with pytest.raises(interrupt):
            km.acquire("m", 500)
        assert store.entered.is_set()  # it was granted and reading the secret
        assert _held(km) == (0, 0)
        store.interrupt = None
        lease = km.acquire("m", 500)  # the same pool serves as before
        assert _held(km) == (1, 500)
        lease.release()
    finally:
        km.close()


async def test_a_cancelled_async_secret_read_releases_the_grant(
    redis_url: str, prefix: str
) -> None:
    km, store = _manager(redis_url, prefix)
    store.gate = threading.Event()
    try:
        task = asyncio.ensure_future(km.aacquire("m", 700))
        for _ in range(500):  # until the grant's secret read has started (in its thread)
            if store.entered.is_set():
                break
            await asyncio.sleep(0.01)
        assert store.entered.is_set()
        assert _held(km) == (1, 700)  # granted, its secret not read yet
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await km.limiter.aflush()  # the release runs in the background
        assert _held(km) == (0, 0)
        store.gate.set()
        lease = await km.aacquire("m", 700)
        assert _held(km) == (1, 700)
        await lease.arelease()
    finally:
        store.gate.set()
        await km.aclose()


def test_an_interrupt_during_the_sync_decision_releases_what_it_granted(
    redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``KeyboardInterrupt`` that arrives once the script ran but before its reply was
    read: the same request sent again returns that grant, which is released."""
    km, _ = _manager(redis_url, prefix)
    store = km.store.primary
    real = store.call
    interrupted: list[str] = []

    def call(name: str, *args: object, **kw: object) -> object:
        out = real(name, *args, **kw)
        if name == "acquire" and not interrupted:
            interrupted.append(name)
            raise KeyboardInterrupt
        return out

    monkeypatch.setattr(store, "call", call)
    try:
        with pytest.raises(KeyboardInterrupt):
            km.acquire("m", 400)
        assert interrupted == ["acquire"]
        for _ in range(500):  # the release runs on a thread of its own
            if _held(km) == (0, 0):
                break
            threading.Event().wait(0.01)
        assert _held(km) == (0, 0)
    finally:
        km.close()
