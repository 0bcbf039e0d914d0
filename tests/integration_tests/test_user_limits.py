"""User and global limits: exact windows, both-or-neither, across processes."""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter

import pytest
from _user_limit_workers import hammer

from rotating_llm import ConfigError, Settings, UserRateLimiter, get_rate_limiter

pytestmark = [
    pytest.mark.redis,
    pytest.mark.filterwarnings("ignore:UserRateLimiter is deprecated:DeprecationWarning"),
]


@pytest.mark.filterwarnings("error")
def test_it_is_deprecated_in_favour_of_tenant_caps(redis_url, prefix) -> None:
    with pytest.warns(DeprecationWarning, match="tenant"):
        UserRateLimiter(Settings(redis_url=redis_url, key_prefix=prefix)).close()


def limiter(redis_url: str, prefix: str, **kw: object) -> UserRateLimiter:
    opts: dict[str, object] = {"redis_url": redis_url, "key_prefix": prefix, "window_seconds": 30}
    opts.update(kw)
    return UserRateLimiter(Settings(**opts))  # type: ignore[arg-type]


def test_user_limit_and_retry_time(redis_url, prefix) -> None:
    rl = limiter(redis_url, prefix, user_rpm_default=2)
    assert rl.check_rate_limit("alice").allowed
    assert rl.check_rate_limit("alice").allowed
    denied = rl.check_rate_limit("alice")
    assert not denied and denied.limited_by == "user"
    assert 29 < denied.retry_after <= 30
    assert rl.check_rate_limit("bob").allowed  # another user is unaffected
    assert rl.check_rate_limit("alice", limit=5).allowed  # a per-call limit


def test_global_limit_counts_nobody_when_refused(redis_url, prefix) -> None:
    rl = limiter(redis_url, prefix, user_rpm_default=5, global_rpm_max=3)
    assert [rl.check_rate_limit(u).allowed for u in ("a", "b", "c")] == [True, True, True]
    denied = rl.check_rate_limit("d")
    assert not denied.allowed and denied.limited_by == "global"
    assert denied.user_count == 0  # refused requests are not counted for the user


def test_window_slides(redis_url, prefix) -> None:
    rl = limiter(redis_url, prefix, user_rpm_default=1, window_seconds=0.5)
    assert rl.check_rate_limit("u").allowed
    assert not rl.check_rate_limit("u").allowed
    time.sleep(0.55)
    assert rl.check_rate_limit("u").allowed


async def test_async_twin(redis_url, prefix) -> None:
    rl = limiter(redis_url, prefix, user_rpm_default=1)
    assert (await rl.acheck_rate_limit("z")).allowed
    assert not (await rl.acheck_rate_limit("z")).allowed
    await rl.store.primary.aclose()


def test_bad_user_id(redis_url, prefix) -> None:
    rl = limiter(redis_url, prefix)
    with pytest.raises(ConfigError, match="user_id"):
        rl.check_rate_limit("")
    with pytest.raises(ConfigError, match="limit must be > 0"):
        rl.check_rate_limit("u", limit=0)


def test_default_reads_the_seed_variables(monkeypatch, redis_url, prefix) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("ROTATING_LLM_KEY_PREFIX", prefix)
    monkeypatch.setenv("USER_RPM_DEFAULT", "1")
    rl = get_rate_limiter(Settings.from_env())
    assert rl.check_rate_limit("seed-user").allowed
    assert not rl.check_rate_limit("seed-user").allowed


@pytest.mark.multiprocess
def test_limits_hold_across_four_processes(redis_url, prefix) -> None:
    users = ["u1", "u2", "u3", "u4", "u5"]
    start_at = time.time() + 4
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        results = pool.starmap(hammer, [(redis_url, prefix, users, start_at)] * 4)
    allowed = Counter(u for r in results for u, ok in r if ok)
    assert sum(allowed.values()) == 10  # the global limit, exactly
    assert all(n <= 3 for n in allowed.values())  # no user above 3
