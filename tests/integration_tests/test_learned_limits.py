"""Limits learned from the provider, on a real Redis (and the embedded store): applied at
once for every process, shown in status, never raised above the file's by a header
unless allowed, remaining held as reserved, expiring, forgotten on reload."""

from __future__ import annotations

import json
import multiprocessing
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import make_keys, secrets_for
from rotating_llm import AllKeysExhaustedError, KeyManager, QuotaGroup, Settings
from rotating_llm.learning import LearnedLimit, ProviderFacts, Remaining, parse_answer
from rotating_llm.secrets import EnvSecretStore
from rotating_llm.testing import QUOTA_IDS
from rotating_llm.testing._gemini import rate_limited
from rotating_llm.testing._limits import Rejection

Make = Callable[..., KeyManager]


@pytest.fixture(params=["redis", "embedded"])
def make(request: pytest.FixtureRequest, prefix: str) -> Iterator[Make]:
    target = request.getfixturevalue("redis_url") if request.param == "redis" else None
    made: list[KeyManager] = []

    def build(keys: list[Any], quota_groups: Any = None, **settings: Any) -> KeyManager:
        opts = {"redis_url": target, "key_prefix": prefix, "max_wait": 0, **settings}
        km = KeyManager(
            keys,
            quota_groups=quota_groups,
            settings=Settings(**opts),
            secret_store=EnvSecretStore(environ=secrets_for(keys)),
            probe=False,
        )
        made.append(km)
        return km

    yield build
    for km in made:
        km.close()


def gemini_429(kind: str, value: int, scope: str = "key") -> ProviderFacts:
    status, body, headers = rate_limited(
        Rejection(kind, value, 5.0, scope=scope),  # type: ignore[arg-type]
        "gemini-2.5-flash",
    )
    return parse_answer(status, body, headers)


def header(rpm: int, remaining: int | None = None, reset: float = 30.0) -> ProviderFacts:
    facts = ProviderFacts(
        (LearnedLimit("rpm", rpm, "project", "x-ratelimit-limit-requests", False),)
    )
    if remaining is None:
        return facts
    return ProviderFacts(facts.limits, (Remaining("rpm", rpm, remaining, reset),))


def grants(km: KeyManager, n: int = 50) -> list[str]:
    """Acquire without waiting until refused (each lease completed); the keys granted."""
    out = []
    for _ in range(n):
        try:
            lease = km.acquire("m", 1, max_wait=0)
        except AllKeysExhaustedError:
            break
        out.append(lease.key_id)
        lease.complete(1)
    return out


def test_a_429_lowers_the_key_s_limit_and_status_says_so(make: Make) -> None:
    km = make(make_keys(2, rpm=10))
    km.learn("k0", gemini_429("rpm", 3))
    st = km.get_key_status("k0")
    assert st["rpm_limit"] == 3
    view = st["limits"]["rpm"]
    assert (view["configured"], view["effective"]) == (10, 3)
    assert view["source"].startswith("learned: ")
    assert "from 429 GenerateRequestsPerMinutePerApiKeyPerModel-FreeTier" in view["source"]
    assert st["limits"]["tpm"]["source"] == "file"
    assert km.get_key_status("k1")["rpm_limit"] == 10
    assert sorted(grants(km)).count("k0") == 3
    if km.store.primary.is_embedded:
        return  # (an embedded store is one manager's own)
    # a second manager (another process's view: same store) registers with the file's
    # limits, and the learned one still holds
    other = make(make_keys(2, rpm=10))
    assert other.get_key_status("k0")["limits"]["rpm"]["effective"] == 3


def test_a_later_429_never_raises_what_a_429_taught(make: Make) -> None:
    km = make(make_keys(1, rpm=10))
    km.learn("k0", gemini_429("tpm", 500))
    km.learn("k0", gemini_429("tpm", 800))
    assert km.get_key_status("k0")["tpm_limit"] == 500


def test_a_header_is_adopted_but_never_above_the_file_unless_allowed(
    make: Make, prefix: str
) -> None:
    km = make(make_keys(1, rpm=10))
    km.learn("k0", header(4))
    assert km.get_key_status("k0")["rpm_limit"] == 4
    km.learn("k0", header(7))  # the provider's word wins, downwards and back up
    assert km.get_key_status("k0")["rpm_limit"] == 7
    km.learn("k0", header(50))
    st = km.get_key_status("k0")
    assert (st["rpm_limit"], st["limits"]["rpm"]["source"]) == (10, "file")
    bold = make(make_keys(1, rpm=10), key_prefix=prefix + "r:", learn_raise=True)
    bold.learn("k0", header(50))
    assert bold.get_key_status("k0")["rpm_limit"] == 50


def test_remaining_below_the_pool_s_count_is_held_until_the_reset(make: Make) -> None:
    km = make(make_keys(1, rpm=10))
    lease = km.acquire("m", 1)
    # another app used the key: 8 of 10 used at the provider, 1 of them ours
    lease.complete(1, facts=header(10, remaining=2, reset=30.0))
    st = km.get_key_status("k0")
    assert st["rpm_usage"] == 8
    assert st["rpm_limit"] == 10  # the header's limit is the file's: nothing learned
    assert len(grants(km)) == 2
    with pytest.raises(AllKeysExhaustedError) as err:
        km.acquire("m", 1, max_wait=0)
    # held until the provider's reset (30 s), not a whole window
    assert err.value.retry_after is not None and 25 < err.value.retry_after <= 30.5


def test_a_per_project_429_lowers_the_group_of_a_grouped_key(make: Make) -> None:
    keys = make_keys(3, rpm=10, quota_group="proj-a")
    km = make(keys, quota_groups=[QuotaGroup(group_id="proj-a", rpm=9)])
    km.learn("k1", gemini_429("rpm", 4, scope="project"))
    group = km.get_group_status("proj-a")
    assert (group["rpm_limit"], group["limits"]["rpm"]["configured"]) == (4, 9)
    assert km.get_key_status("k1")["rpm_limit"] == 10  # the key's own is unchanged
    assert km.get_key_status("k1")["group"]["rpm_limit"] == 4
    assert len(grants(km)) == 4


def test_a_per_project_429_on_a_key_alone_puts_it_alone_in_the_learned_group(
    make: Make,
) -> None:
    km = make(make_keys(2, rpm=10))
    held = [km.acquire("m", 1, exclude=["k1"]) for _ in range(5)]
    for lease in held[:4]:
        lease.complete(1)
    # the fifth is refused at the project's 4, which the key filled alone
    held[4].fail("rate_limit", 0.01, facts=gemini_429("rpm", 4, scope="project"))
    time.sleep(0.05)
    st = km.get_key_status("k0")
    assert st["learned_group"]["key_ids"] == ["k0"]
    assert st["learned_group"]["rpm_usage"] == 5  # its 4 and the refused one
    assert km.get_key_status("k1")["learned_group"] is None
    assert set(grants(km)) == {"k1"}


def test_per_project_429s_on_keys_sharing_a_project_put_them_in_a_learned_group(
    make: Make,
) -> None:
    km = make(make_keys(3, rpm=10))
    for kid in ("k0", "k1"):
        first = km.acquire("m", 1, exclude=[k for k in ("k0", "k1", "k2") if k != kid])
        first.complete(1)
    # k0's second request is refused: the project (4) is full while k0 held only 1
    refused = km.acquire("m", 1, exclude=["k1", "k2"])
    refused.fail("rate_limit", 0.01, facts=gemini_429("rpm", 4, scope="project"))
    st = km.get_key_status("k0")
    assert st["rpm_limit"] == 10  # the key's own limit is not what the provider named
    group = st["learned_group"]
    assert group is not None and group["group_id"] == "@~project"
    assert group["limits"]["rpm"]["effective"] == 4
    assert group["rpm_usage"] == 2  # k0's reservations in the window came along
    time.sleep(0.05)
    # k1 refused too: it joins; its request in the window counts with the group
    refused = km.acquire("m", 1, exclude=["k0", "k2"])
    refused.fail("rate_limit", 0.01, facts=gemini_429("rpm", 4, scope="project"))
    time.sleep(0.05)
    assert km.get_key_status("k1")["learned_group"]["rpm_usage"] == 4
    assert set(grants(km)) == {"k2"}  # the group is full; k2 (no 429 yet) is not in it
    if km.store.primary.is_embedded:
        return
    other = make(make_keys(3, rpm=10))  # registering again keeps the learned group
    assert other.get_key_status("k0")["learned_group"]["key_ids"] == ["k0", "k1"]


def test_learned_limits_expire_and_reload_forgets_them(make: Make, tmp_path: Path) -> None:
    km = make(make_keys(1, rpm=10), learn_ttl_seconds=0.5)
    km.learn("k0", gemini_429("rpm", 2))
    assert km.get_key_status("k0")["rpm_limit"] == 2
    time.sleep(0.7)
    assert km.get_key_status("k0")["rpm_limit"] == 10
    assert len(grants(km)) == 10  # the limiter's config is the file's again

    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": [k.model_dump() for k in make_keys(1, rpm=10)]}))
    km2 = make(make_keys(1, rpm=10), key_prefix=km.settings.key_prefix + "2:")
    km2.key_store_path = path
    km2.reload_keys()
    km2.learn("k0", gemini_429("rpm", 2))
    assert km2.get_key_status("k0")["rpm_limit"] == 2
    km2.reload_keys()
    st = km2.get_key_status("k0")
    assert (st["rpm_limit"], st["limits"]["rpm"]["source"]) == (10, "file")


def _second_process(redis_url: str, prefix: str) -> list[int]:
    keys = make_keys(1, rpm=10)
    settings = Settings(redis_url=redis_url, key_prefix=prefix, max_wait=0)
    km = KeyManager(keys, settings=settings, secret_store=EnvSecretStore(secrets_for(keys)))
    st = km.get_key_status("k0")
    n = len(grants(km))
    km.close()
    return [st["rpm_limit"], n]


@pytest.mark.multiprocess
def test_a_second_process_sees_what_the_first_learned(redis_url: str, prefix: str) -> None:
    keys = make_keys(1, rpm=10)
    settings = Settings(redis_url=redis_url, key_prefix=prefix, max_wait=0)
    km = KeyManager(keys, settings=settings, secret_store=EnvSecretStore(secrets_for(keys)))
    km.learn("k0", gemini_429("rpm", 3))
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        limit, granted = pool.apply(_second_process, (redis_url, prefix))
    assert (limit, granted) == (3, 3)
    km.close()


def test_quota_ids_of_the_simulator_are_what_the_tests_use() -> None:
    assert "PerProject" in QUOTA_IDS["rpm"]


def test_top_and_keys_status_show_learned_limits(
    make: Make, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # rich would wrap the table's cells
    from rotating_llm._cli_top import snapshot
    from rotating_llm.cli import _print_statuses

    keys = make_keys(2, rpm=10, quota_group="proj-a")
    km = make(keys, quota_groups=[QuotaGroup(group_id="proj-a", rpm=9)])
    km.learn("k0", gemini_429("rpm", 3))
    km.learn("k0", gemini_429("tpm", 500, scope="project"))
    rows = {r["key_id"]: r for r in snapshot(km)["pools"]["m"]}
    assert rows["k0"]["learned_limits"] == "rpm 3 (file 10); group proj-a: tpm 500 (file -)"
    assert rows["k1"]["learned_limits"] == "group proj-a: tpm 500 (file -)"
    _print_statuses(km.get_all_key_statuses())
    out = capsys.readouterr().out
    assert "rpm 3 (file 10)" in out
    assert "tpm 500 (file -)" in out


async def test_the_async_entry_point_learns_too(make: Make) -> None:
    km = make(make_keys(1, rpm=10))
    lease = await km.aacquire("m", 1)
    await lease.acomplete(1, facts=header(4))
    refused = await km.aacquire("m", 1)
    await refused.afail("rate_limit", 0.01, facts=gemini_429("tpm", 900))
    st = km.get_key_status("k0")
    assert (st["rpm_limit"], st["tpm_limit"]) == (4, 900)
    await km.aclose()


def test_extreme_provider_numbers_stay_bounded(make: Make) -> None:
    from rotating_llm._bounds import MAX_LIMIT

    km = make(make_keys(1, rpm=10))
    huge = ProviderFacts(
        (LearnedLimit("tpm", MAX_LIMIT, "project", "x-ratelimit-limit-tokens", False),),
        (Remaining("rpm", MAX_LIMIT, 0, 90_000.0), Remaining("tpm", MAX_LIMIT, 0, 90_000.0)),
    )
    km.learn("k0", huge)
    st = km.get_key_status("k0")
    assert st["rpm_usage"] == 1000  # at most 1,000 held per answer, one carrying the tokens
    assert st["tpm_usage"] == MAX_LIMIT
    assert st["tpm_limit"] == 100_000  # a header never raises the file's limit
    with pytest.raises(AllKeysExhaustedError) as err:
        km.acquire("m", 1, max_wait=0)
    assert err.value.retry_after is not None and err.value.retry_after <= 60.5  # a window


def test_an_exhausted_pool_names_the_learned_limit(make: Make) -> None:
    km = make(make_keys(1, rpm=10, tpm=100_000))
    km.learn("k0", gemini_429("rpm", 2))
    assert len(grants(km)) == 2
    with pytest.raises(AllKeysExhaustedError) as err:
        km.acquire("m", 1, max_wait=0)
    assert err.value.reasons == {"k0": "rpm"}
