"""Degraded share and write-back, with several processes (spawn) on a Redis of the
test's own that is killed and restarted empty, or flushed, mid-run.

Every worker takes every grant it can (``max_wait=0``) in each phase; the whole run
stays inside one window, so the grants of a key over the run are the most any window
saw. They never exceed the key's limit: while Redis is lost each process grants only
its share (seeded with what it took on Redis), and when Redis comes back empty (or is
flushed) each process writes back its grants of the window before anyone is granted
more."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
from _degraded_workers import KEYS, RPM, WINDOW, worker
from _redis_server import RedisProcess

from conftest import make_keys, secrets_for
from rotating_llm import AllKeysExhaustedError, KeyManager, QuotaGroup, Settings
from rotating_llm.secrets import EnvSecretStore

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.multiprocess]

WORKERS = 3


def _run(
    server: RedisProcess,
    prefix: str,
    tmp_path: Path,
    first: int | list[int],
    phases: list[tuple[str, float]],
    between: dict[str, Any],
    tenant_rpm: int = 0,
) -> list[dict[str, Any]]:
    """Run the workers; before each phase, ``between[phase]()`` (kill, restart, flush)."""
    ctl = tmp_path / "control"
    ctl.mkdir()
    ctx = multiprocessing.get_context("spawn")

    def wait_all(stem: str) -> None:
        deadline = time.monotonic() + 60
        while len(list(ctl.glob(f"{stem}-*"))) < WORKERS:
            for f in futures:
                if f.done():
                    f.result()  # a worker died: show why
            assert time.monotonic() < deadline, f"workers never reached {stem}"
            time.sleep(0.02)

    with ProcessPoolExecutor(max_workers=WORKERS, mp_context=ctx) as pool:
        futures = [
            pool.submit(
                worker,
                server.url,
                prefix,
                str(ctl),
                w,
                first if isinstance(first, int) else first[w],
                phases,
                tenant_rpm,
            )
            for w in range(WORKERS)
        ]
        wait_all("ready")
        time.sleep(1.0)  # every worker's heartbeat has seen the others
        t0 = time.monotonic()
        (ctl / "before").touch()
        wait_all("before")
        time.sleep(1.0)  # heartbeats have read what Redis holds (the degraded seed)
        for name, _ in phases:
            between.get(name, lambda: None)()
            (ctl / name).touch()
            wait_all(name)
        took = time.monotonic() - t0
        records = [r for f in futures for r in f.result(timeout=60)]
    assert took < WINDOW - 5, "the run must fit in one window for the counts to mean it"
    return records


def _per_key(records: list[dict[str, Any]], phase: str | None = None) -> Counter[str]:
    return Counter(r["key"] for r in records if phase is None or r["phase"] == phase)


@pytest.mark.parametrize("run", range(1))
def test_killed_redis_each_process_grants_its_share_and_writes_it_back(
    prefix: str, tmp_path: Path, run: int
) -> None:
    server = RedisProcess()
    server.start()
    try:
        records = _run(
            server,
            prefix,
            tmp_path,
            first=1,
            phases=[("lost", 2.0), ("back", 2.5)],
            between={"lost": server.stop, "back": server.start},
        )
    finally:
        server.stop()
    total = _per_key(records)
    lost = [r for r in records if r["phase"] == "lost"]
    print("per key:", dict(total), "lost:", dict(_per_key(records, "lost")),
          "back:", dict(_per_key(records, "back")))  # fmt: skip
    assert set(total) <= {f"k{i}" for i in range(KEYS)}
    phases = {p: dict(_per_key(records, p)) for p in ("before", "lost", "back")}
    assert all(n <= RPM for n in total.values()), phases  # never over the limit
    # the shares add up to the limit: the pool's whole capacity was used, not more
    assert sum(total.values()) == KEYS * RPM
    assert lost and all(r["embedded"] for r in lost)
    # written back: Redis, back empty, refused what the window had already granted
    assert _per_key(records, "back") == Counter()


def test_flushed_redis_is_repaired_by_each_process_replaying_its_grants(
    prefix: str, tmp_path: Path
) -> None:
    server = RedisProcess()
    server.start()
    try:

        def flush() -> None:
            redis.Redis.from_url(server.url).flushall()

        records = _run(
            server, prefix, tmp_path, first=2, phases=[("after", 2.5)], between={"after": flush}
        )
    finally:
        server.stop()
    total = _per_key(records)
    print("per key:", dict(total), "after the flush:", dict(_per_key(records, "after")))
    assert all(n <= RPM for n in total.values()), total
    assert sum(total.values()) == KEYS * RPM  # the rest of the window was still served
    assert all(not r["embedded"] for r in records)  # a flush is not a loss: no failover


# -- a capped tenant: its window is journalled and shared as a key's is -----------------

#: The tenant's cap: below the pool's 12 and not a multiple of the 3 processes (shares 3,
#: 2 and 2: the budget is apportioned, so the shares add up to the cap, not to 9 or 6).
TENANT_RPM = 7


#: A known gap (README, "Write-back and repair"): after a flush each process replays its
#: own grants at its next call, and one that grants on the emptied Redis before another
#: has replayed can take what that one will put back: seen 8 against 7 in a few runs.
_REPLAY_RACE = pytest.mark.xfail(
    reason="a grant after a flush can come before another process's replay", strict=False
)


@pytest.mark.parametrize("fault", [pytest.param("flush", marks=_REPLAY_RACE), "kill"])
def test_a_tenant_never_gets_more_than_its_cap_across_a_flush_or_a_lost_redis(
    prefix: str, tmp_path: Path, fault: str
) -> None:
    """3 processes take all a capped tenant may (the keys have room for more), one of
    them 4 of the 6 granted first: across a FLUSHALL each process replays its tenant
    grants of the window, so the cap is not granted a second time; with Redis killed
    each grants only its share of the cap less its share of what Redis held at the last
    heartbeat (2 each: without that seed the two others would grant 2 or more, not 1),
    and writes them back when Redis returns empty."""
    server = RedisProcess()
    server.start()
    try:
        if fault == "flush":

            def flush() -> None:
                redis.Redis.from_url(server.url).flushall()

            phases, between = [("after", 2.5)], {"after": flush}
        else:
            phases = [("lost", 2.0), ("back", 2.5)]
            between = {"lost": server.stop, "back": server.start}
        records = _run(server, prefix, tmp_path, [4, 1, 1], phases, between, tenant_rpm=TENANT_RPM)
    finally:
        server.stop()
    by_phase = {p: dict(_per_key(records, p)) for p in ("before", "after", "lost", "back")}
    print("tenant grants per phase and key:", by_phase)
    assert sum(_per_key(records, "before").values()) == 6
    # never over the cap, and all of it used: the rest of the window was still served
    assert len(records) == TENANT_RPM, by_phase
    if fault == "kill":
        lost = [r for r in records if r["phase"] == "lost"]
        assert lost and all(r["embedded"] for r in lost)
        assert _per_key(records, "back") == Counter()  # written back: nothing granted twice
    else:
        assert all(not r["embedded"] for r in records)


def test_a_process_with_no_share_of_a_tenant_cap_refuses_the_tenant_while_lost(
    prefix: str, tmp_path: Path
) -> None:
    """A cap of 2 over 3 processes: shares 1, 1 and 0. With Redis killed before any
    grant, the pool grants the tenant 2, never 3 (a share of 0 is a refusal, not "no
    cap"), though every process has key capacity left."""
    server = RedisProcess()
    server.start()
    try:
        records = _run(server, prefix, tmp_path, 0, [("lost", 2.0)], {"lost": server.stop}, 2)
    finally:
        server.stop()
    print("tenant grants while lost:", dict(_per_key(records, "lost")))
    assert len(records) == 2 and all(r["embedded"] for r in records)


# -- one process: what it set on its keys survives a flush, and async writes back too ----


def _one(url: str, prefix: str) -> KeyManager:
    keys = make_keys(3, rpm=4)
    settings = Settings(
        redis_url=url, key_prefix=prefix, max_wait=0, window_seconds=30,
        heartbeat_seconds=0.2, store_retry_interval=0.2, probe_seconds=0,
    )  # fmt: skip
    return KeyManager(keys, settings=settings, secret_store=EnvSecretStore(secrets_for(keys)))


def _drain(km: KeyManager) -> Counter[str]:
    got: Counter[str] = Counter()
    for _ in range(40):
        try:
            lease = km.acquire("m")
        except AllKeysExhaustedError:
            break
        got[lease.key_id] += 1
        lease.complete(1)
    return got


def test_a_flush_keeps_disabled_and_cooling_keys_out_and_the_window_full(
    prefix: str, tmp_path: Path
) -> None:
    server = RedisProcess()
    server.start()
    km = _one(server.url, prefix)
    try:
        km.disable_key("k0", "revoked")
        km.mark_key_unhealthy("k1", 60, "429")
        first = _drain(km)
        assert first == Counter({"k2": 4})
        redis.Redis.from_url(server.url).flushall()
        time.sleep(0.6)  # a heartbeat or two: the epoch is gone, the pool is replayed
        assert _drain(km) == Counter()  # k2's window written back; k0, k1 still out
        usage = km.limiter.usage("m")
        assert usage["k0"].disabled_reason == "revoked"
        assert usage["k1"].cooldown_remaining > 50
        assert usage["k2"].rpm_count == 4
    finally:
        km.close()
        server.stop()


@pytest.mark.parametrize("fault", ["flush", "kill"])
def test_a_cooling_quota_group_stays_out_after_a_flush_or_a_failover(
    prefix: str, fault: str
) -> None:
    """A group's cooldown (every key of a per-project quota) is put back as a key's is:
    into a Redis that was flushed, and into the in-process store after a failover."""
    server = RedisProcess()
    server.start()
    keys = make_keys(3, rpm=4, quota_group="proj-a")
    settings = Settings(
        redis_url=server.url, key_prefix=prefix, max_wait=0, window_seconds=30,
        heartbeat_seconds=0.2, store_retry_interval=0.2, probe_seconds=0,
    )  # fmt: skip
    km = KeyManager(
        keys,
        quota_groups=[QuotaGroup(group_id="proj-a", rpm=12)],
        settings=settings,
        secret_store=EnvSecretStore(secrets_for(keys)),
    )
    try:
        km.acquire("m").complete(1)
        km.mark_group_unhealthy("proj-a", 60, "per-project 429")
        assert _drain(km) == Counter()
        if fault == "flush":
            redis.Redis.from_url(server.url).flushall()
            time.sleep(0.6)  # a heartbeat or two: the epoch is gone, the pool is replayed
        else:
            server.stop()
        assert _drain(km) == Counter()  # the group's keys are still out
        if fault == "flush":
            status = km.get_group_status("proj-a")
            assert status["rpm_usage"] == 1, status  # the window written back too
        else:
            assert km.store.primary_down
    finally:
        km.close()
        server.stop()


@pytest.mark.parametrize("limit", ["key rpd", "group rpd"])
def test_daily_limits_hold_while_lost(prefix: str, limit: str) -> None:
    """The in-process store is seeded with the day's use Redis counted before the
    window (not only the window's reservations): a key's (or a group's) daily limit
    is not granted afresh after a failover."""
    server = RedisProcess()
    server.start()
    grouped = limit == "group rpd"
    keys = make_keys(
        2, rpm=50, rpd=None if grouped else 5, quota_group="proj-a" if grouped else None
    )
    groups = [QuotaGroup(group_id="proj-a", rpd=8)] if grouped else []
    settings = Settings(
        redis_url=server.url, key_prefix=prefix, max_wait=0, window_seconds=2,
        heartbeat_seconds=0.2, store_retry_interval=0.2, probe_seconds=0,
    )  # fmt: skip
    km = KeyManager(
        keys, quota_groups=groups, settings=settings, secret_store=EnvSecretStore(secrets_for(keys))
    )
    try:
        before = Counter()
        for _ in range(6):
            lease = km.acquire("m")
            before[lease.key_id] += 1
            lease.complete(1)
        time.sleep(2.5)  # out of the window, still today; heartbeats read Redis meanwhile
        server.stop()
        lost = _drain(km)
        assert km.store.primary_down
        if grouped:
            assert sum(lost.values()) == 8 - 6, (before, lost)
        else:
            assert all(before[k] + lost[k] == 5 for k in ("k0", "k1")), (before, lost)
    finally:
        km.close()
        server.stop()


def test_async_grants_while_lost_are_written_back(prefix: str, tmp_path: Path) -> None:
    server = RedisProcess()
    server.start()
    km = _one(server.url, prefix)

    async def main() -> tuple[int, int]:
        first = await km.aacquire("m")
        await first.acomplete(1)
        server.stop()
        lost = 0
        for _ in range(20):
            try:
                lease = await km.aacquire("m")
            except Exception:
                break
            assert lease.reservation is not None and lease.reservation.store.is_embedded
            await lease.acomplete(1)
            lost += 1
        server.start()
        back = 0
        for _ in range(100):  # until a probe finds Redis: then the window is full
            try:
                lease = await km.aacquire("m")
            except Exception:
                if not km.store.primary_down:
                    break
                await asyncio.sleep(0.05)
                continue
            await lease.acomplete(1)
            if not lease.reservation.store.is_embedded:  # type: ignore[union-attr]
                back += 1
        await km.aclose()
        return lost, back

    try:
        lost, back = asyncio.run(main())
        assert lost == 3 * 4 - 1  # one process: its share is the whole pool, less its grant
        assert back == 0
        assert sum(u.rpm_count for u in km.limiter.usage("m").values()) == 12
    finally:
        km.close()
        server.stop()


def test_a_registration_during_traffic_replays_nothing_redis_still_holds(make) -> None:
    """A pool registered again while Redis kept its state (keys changed, a concurrent
    first use by many tasks) replays none of this process's grants of that state, even
    one whose settlement is still in flight (the journal already has its real tokens,
    Redis not yet): adding it again counted it twice."""
    from conftest import make_keys

    km = make(make_keys(1, rpm=100, tpm=10_000))
    lease = km.acquire("m", 50)
    assert lease.reservation is not None
    km.limiter.journal.settled(lease.reservation, "complete", 3, True)  # sent, not applied
    km.limiter._mark_registered(km.store.primary, "m", done=False)
    km.limiter.register_all()
    st = km.get_key_status("k0")
    assert (st["rpm_usage"], st["tpm_usage"]) == (1, 50)
    lease.complete(3)
    km.limiter.flush()
    st = km.get_key_status("k0")
    assert (st["rpm_usage"], st["tpm_usage"]) == (1, 3)
