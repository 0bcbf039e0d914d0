"""Tiers as the limiter registers them: checked again, bounded per pool, shared by processes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis

from rotating_llm import AllKeysExhaustedError, APIKey, ConfigError, KeyManager, QuotaGroup
from rotating_llm._bounds import MAX_POOL_TIERS


def _key(kid: str, rpm: int = 5, tier: int = 0, **kw: Any) -> APIKey:
    return APIKey(
        key_id=kid, model_name="m", provider="gemini", rpm=rpm, tpm=10**6, tier=tier, **kw
    )


@pytest.mark.parametrize(
    ("field", "bad"),
    [("tier", -1), ("tier", "x"), ("tier", 1001), ("tier", 1.5), ("rpm", 0), ("rpm", "5"),
     ("tpm", 10**13), ("tpd", -1), ("weight", float("inf")), ("weight", 0)],
)  # fmt: skip
def test_a_key_copied_with_a_bad_value_is_a_config_error_not_a_broken_pool(
    make: Callable[..., KeyManager], field: str, bad: Any
) -> None:
    good = _key("good")
    broken = _key("bad").model_copy(update={field: bad})  # model_copy skips validation
    with pytest.raises(ConfigError) as info:
        make([good, broken])
    assert "'bad'" in str(info.value) and field in str(info.value)
    km = make([good])
    with pytest.raises(ConfigError):
        km.set_keys([good, broken])
    assert km.keys == [good]  # nothing changed: the pool still decides
    assert km.acquire("m", 1).key_id == "good"


def test_a_group_copied_with_a_bad_limit_is_a_config_error(make: Callable[..., KeyManager]) -> None:
    group = QuotaGroup(group_id="g", rpm=5).model_copy(update={"rpm": -1})
    with pytest.raises(ConfigError, match=r"'g'.*rpm"):
        make([_key("k0", quota_group="g")], quota_groups=[group])


def test_a_pool_has_at_most_max_pool_tiers_distinct_tiers(make: Callable[..., KeyManager]) -> None:
    keys = [_key(f"k{t}", tier=t * 3) for t in range(MAX_POOL_TIERS)]
    km = make(keys)
    assert km.acquire("m", 1).key_id == "k0"
    with pytest.raises(ConfigError, match=f"'m'.*{MAX_POOL_TIERS + 1} distinct tiers"):
        km.set_keys([*keys, _key("extra", tier=999)])
    # another pool's tiers do not count
    other = [k.model_copy(update={"model_name": "n"}) for k in keys]
    km.set_keys([*keys, *[k.model_copy(update={"key_id": f"n{k.key_id}"}) for k in other]])


def test_a_tier_another_process_registered_is_seen(
    manager_factory: Callable[..., KeyManager],
) -> None:
    """A process whose keys put p1 in tier 0 still finds it after another registered it
    in tier 1 (the tiers come from the store, not from this process's key list)."""
    old = manager_factory([_key("f0", rpm=1), _key("p1")])
    old.limiter.register_all()
    new = manager_factory([_key("f0", rpm=1), _key("p1", tier=1)])
    new.limiter.register_all()  # p1 moves to tier 1's availability set
    assert old.acquire("m", 1).key_id == "f0"  # tier 0 first
    assert old.acquire("m", 1).key_id == "p1"  # found in tier 1
    assert new.acquire("m", 1).key_id == "p1"
    new.set_keys([_key("f0", rpm=1), _key("p1")])  # back to one tier: nothing else to read
    for _ in range(3):  # p1 (rpm 5) holds 2: 3 more, then the pool is full
        assert old.acquire("m", 1).key_id == "p1"
    with pytest.raises(AllKeysExhaustedError):
        old.acquire("m", 1)
    assert set(old.limiter.usage("m")) == {"f0", "p1"}  # the tier list is not a key


def _calls(client: redis.Redis, command: str) -> int:
    stats = client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def test_a_full_group_touches_only_its_members_tiers(redis_url: str, prefix: str) -> None:
    """With MAX_POOL_TIERS tiers, a grant in tier 0 that fills a group of tier-0 keys
    reads one availability set and rescores only tier 0's (not one ZADD per tier)."""
    from rotating_llm import Settings
    from rotating_llm.secrets import EnvSecretStore

    keys = [_key("f0", quota_group="g"), _key("f1", quota_group="g")]
    keys += [_key(f"p{t}", tier=t) for t in range(1, MAX_POOL_TIERS)]
    km = KeyManager(
        keys,
        quota_groups=[QuotaGroup(group_id="g", rpm=1)],
        settings=Settings(redis_url=redis_url, key_prefix=prefix, max_wait=0, window_seconds=60),
        secret_store=EnvSecretStore(
            environ={f"API_KEY_{k.key_id.upper()}": "s" * 12 for k in keys}
        ),
        probe=False,  # no heartbeat: every command counted is the decision's
    )
    try:
        km.limiter.register_all()
        client = redis.Redis.from_url(redis_url)
        zadd, zrange = _calls(client, "zadd"), _calls(client, "zrangebyscore")
        assert km.acquire("m", 1).key_id in ("f0", "f1")
        # rpm:<key>, rpm:@g, the key's new score, the group's full members: one set
        assert _calls(client, "zadd") - zadd == 4
        assert _calls(client, "zrangebyscore") - zrange == 1  # tier 0 granted: one set read
        assert km.acquire("m", 1).key_id == "p1"  # the group is full: overflow to tier 1
        client.close()
    finally:
        km.close()
