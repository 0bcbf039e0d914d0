"""Quota groups: keys that share a provider project's limits. A grant fits the key and
its group, both checked and reserved in one atomic call, on every store."""

from __future__ import annotations

import time

import pytest
from _days import set_day, store_now_us

from conftest import make_keys
from rotating_llm import AllKeysExhaustedError, ConfigError, QuotaGroup

_H = 3_600_000_000


def _grouped(n: int = 3, **kw: object) -> list:
    return make_keys(n, rpm=10, tpm=100_000, quota_group="proj-a", **kw)


def test_a_group_admits_its_own_limit_across_its_keys(make) -> None:
    km = make(_grouped(), [QuotaGroup(group_id="proj-a", rpm=4)])
    leases = [km.acquire("m", 1) for _ in range(4)]
    assert len({lease.key_id for lease in leases}) == 3  # spread over the keys ...
    with pytest.raises(AllKeysExhaustedError) as info:
        km.acquire("m", 1)  # ... but 4 in all, although each key could take 10
    assert 59 < info.value.retry_after <= 60
    for lease in leases:
        lease.complete()
    group = km.get_group_status("proj-a")
    assert (group["rpm_usage"], group["rpm_limit"]) == (4, 4)
    assert group["key_ids"] == ["k0", "k1", "k2"] and group["model_name"] == "m"
    assert 59 < group["next_capacity_in"] <= 60
    # every key of the full group waits for it (none is eligible)
    for st in km.get_all_key_statuses():
        assert st["quota_group"] == "proj-a" and st["group"]["rpm_usage"] == 4
        assert st["next_capacity_in"] > 59


def test_a_release_frees_the_group_at_once(make) -> None:
    km = make(_grouped(), [QuotaGroup(group_id="proj-a", rpm=2)])
    first = km.acquire("m", 1)
    km.acquire("m", 1).complete()
    with pytest.raises(AllKeysExhaustedError):
        km.acquire("m", 1)
    first.release()  # never reached the provider
    assert km.get_group_status("proj-a")["rpm_usage"] == 1
    km.acquire("m", 1).complete()  # the freed slot is taken again, by any key
    with pytest.raises(AllKeysExhaustedError):
        km.acquire("m", 1)


@pytest.mark.slow
def test_group_tokens_are_settled_like_a_key_s(make) -> None:
    km = make(_grouped(2), [QuotaGroup(group_id="proj-a", tpm=100, tpd=150)], window_seconds=2)
    now = store_now_us(km)
    set_day(km, now - _H, now + _H)
    km.acquire("m", 60).complete(actual_tokens=20)
    group = km.get_group_status("proj-a")
    assert (group["tpm_usage"], group["tpd_usage"]) == (20, 20)
    km.acquire("m", 80).complete(actual_tokens=80)  # fits after the correction
    with pytest.raises(AllKeysExhaustedError) as info:
        km.acquire("m", 1)
    assert set(info.value.reasons.values()) == {"group tpm"}
    group = km.get_group_status("proj-a")
    assert (group["tpm_usage"], group["tpd_usage"]) == (100, 100)
    # the day's tokens outlast the window: after it, 50 fit the day but 60 do not
    time.sleep(2.1)
    assert km.get_group_status("proj-a")["tpm_usage"] == 0
    with pytest.raises(AllKeysExhaustedError) as info:
        km.acquire("m", 60)
    assert set(info.value.reasons.values()) == {"group tpd"}
    assert info.value.retry_after == pytest.approx(3600, abs=5)
    km.acquire("m", 50).complete()
    assert km.get_group_status("proj-a")["tpd_usage"] == 150


def test_a_key_and_its_group_are_both_checked(make) -> None:
    keys = make_keys(2, rpm=1, tpm=100_000, quota_group="proj-a")
    km = make(keys, [QuotaGroup(group_id="proj-a", rpm=10)])
    assert {km.acquire("m", 1).key_id, km.acquire("m", 1).key_id} == {"k0", "k1"}
    with pytest.raises(AllKeysExhaustedError) as info:
        km.acquire("m", 1)
    assert info.value.reasons == {"k0": "rpm", "k1": "rpm"}  # the keys' own limits
    assert km.get_group_status("proj-a")["rpm_usage"] == 2


def test_grouped_and_ungrouped_keys_share_a_pool(make) -> None:
    solo = make_keys(1, rpm=3)[0].model_copy(update={"key_id": "solo"})
    keys = [*make_keys(2, rpm=10, quota_group="proj-a"), solo]
    km = make(keys, [QuotaGroup(group_id="proj-a", rpm=2)])
    got = [km.acquire("m", 1).key_id for _ in range(5)]
    assert sorted(got).count("solo") == 3 and len(got) == 5
    with pytest.raises(AllKeysExhaustedError) as info:
        km.acquire("m", 1)
    assert info.value.reasons["solo"] == "rpm"
    assert km.get_key_status("solo")["group"] is None


def test_a_per_project_cooldown_cools_the_whole_group(make) -> None:
    solo = make_keys(1, rpm=10)[0].model_copy(update={"key_id": "solo"})
    keys = [*make_keys(2, rpm=10, quota_group="proj-a"), solo]
    km = make(keys, [QuotaGroup(group_id="proj-a", rpm=100)])
    secs = km.mark_group_unhealthy("proj-a", 30, "429 per-project quota")
    assert secs == 30
    for kid in ("k0", "k1"):
        st = km.get_key_status(kid)
        assert st["in_cooldown"] and st["cooldown_reason"] == "429 per-project quota"
    assert not km.get_key_status("solo")["in_cooldown"]
    assert {km.acquire("m", 1).key_id for _ in range(3)} == {"solo"}
    now = store_now_us(km)
    set_day(km, now - _H, now + 2 * _H)
    daily = km.mark_group_unhealthy("proj-a", reason="per-day", until_daily_reset=True)
    assert daily == pytest.approx(7200, abs=5)
    km.clear_group_cooldown("proj-a")
    assert not km.get_key_status("k0")["in_cooldown"]
    assert km.acquire("m", 1, exclude=["solo"]).key_id in {"k0", "k1"}


def test_groups_are_checked_in_code_too(make) -> None:
    group = QuotaGroup(group_id="proj-a", rpm=4)
    with pytest.raises(ConfigError, match="unknown quota group 'proj-b'"):
        make(make_keys(1, quota_group="proj-b"), [group])
    with pytest.raises(ConfigError, match="duplicate quota group_id 'proj-a'"):
        make(make_keys(1, quota_group="proj-a"), [group, group])
    other = make_keys(1, model="other", quota_group="proj-a")[0].model_copy(update={"key_id": "o"})
    mixed = [*make_keys(1, quota_group="proj-a"), other]
    with pytest.raises(ConfigError, match="share one model"):
        make(mixed, [group])
    km = make(make_keys(2), [group])
    with pytest.raises(ConfigError, match="unknown quota group"):
        km.mark_group_unhealthy("nope", 5)
    # a group no key names has no usage
    assert km.get_group_status("proj-a")["rpm_usage"] == 0
