"""Leases: reconcile, release, the failure table, health changes, strategies."""

from __future__ import annotations

import asyncio
import collections

import pytest

from conftest import make_keys, secrets_for
from rotating_llm import (
    AllKeysExhaustedError,
    APIKey,
    ConfigError,
    FailureKind,
    LeaseError,
    SecretStoreError,
)
from rotating_llm.limiter._schema import LAYOUT_VERSION

pytestmark = pytest.mark.redis


class _Sync:
    """The sync shell: the manager's and lease's own blocking calls."""

    def acquire(self, km, *args, **kw):
        return km.acquire(*args, **kw)

    def fail(self, lease, *args, **kw):
        return lease.fail(*args, **kw)

    def complete(self, lease, *args):
        lease.complete(*args)


class _Async:
    """The async shell: the same calls awaited on one event loop for the whole test."""

    def __init__(self) -> None:
        self.runner = asyncio.Runner()

    def acquire(self, km, *args, **kw):
        return self.runner.run(km.aacquire(*args, **kw))

    def fail(self, lease, *args, **kw):
        return self.runner.run(lease.afail(*args, **kw))

    def complete(self, lease, *args):
        async def complete_and_apply() -> None:
            await lease.acomplete(*args)
            await lease._manager.limiter.aflush()

        self.runner.run(complete_and_apply())


@pytest.fixture(params=["sync", "async"])
def sh(request):
    """Each failure-table test runs over both shells of the same rules."""
    if request.param == "sync":
        yield _Sync()
        return
    shell = _Async()
    yield shell
    shell.runner.close()


def test_complete_reconciles_tokens(manager_factory) -> None:
    km = manager_factory(make_keys(1, rpm=10, tpm=1000), window_seconds=30)
    lease = km.acquire("m", 800)
    assert km.limiter.get_tpm_usage("k0")["used"] == 800
    lease.complete(actual_tokens=120)
    assert km.limiter.get_tpm_usage("k0")["used"] == 120
    km.acquire("m", 800).complete(800)  # the freed tokens are usable at once
    assert km.limiter.get_tpm_usage("k0")["used"] == 920


def test_release_returns_request_tokens_and_daily_count(manager_factory) -> None:
    km = manager_factory(make_keys(1, rpm=1, tpm=1000, rpd=5), window_seconds=30)
    lease = km.acquire("m", 500)
    lease.release()
    status = km.get_key_status("k0")
    assert (status["rpm_usage"], status["tpm_usage"], status["rpd_usage"]) == (0, 0, 0)
    km.acquire("m", 500).complete()  # the single rpm slot is free again


def test_settling_twice_changes_nothing(manager_factory) -> None:
    km = manager_factory(make_keys(1, tpm=1000), window_seconds=30)
    lease = km.acquire("m", 100)
    lease.complete(50)
    lease.release()
    lease.complete(999)
    assert lease.outcome == "complete"
    assert km.limiter.get_tpm_usage("k0")["used"] == 50
    with pytest.raises(LeaseError):
        km.acquire("m", 1).complete(-1)


def test_context_manager(manager_factory) -> None:
    km = manager_factory(make_keys(1, tpm=1000), window_seconds=30)
    with km.acquire("m", 70) as lease:
        assert lease.api_key.get_secret_value().startswith("sk-test-k0")
    assert lease.outcome == "complete"
    with pytest.raises(RuntimeError), km.acquire("m", 30) as failed:
        raise RuntimeError("boom")
    assert failed.outcome == "fail:server"
    assert km.get_key_status("k0")["in_cooldown"] is False  # model-side: not blamed


def test_rate_limit_with_provider_delay_cools_the_key(manager_factory, sh) -> None:
    km = manager_factory(make_keys(2), window_seconds=30)
    lease = sh.acquire(km, "m", 1, exclude=["k1"])
    assert sh.fail(lease, FailureKind.RATE_LIMIT, retry_after=17, reason="429 per minute") == "cooldown"
    status = km.get_key_status("k0")
    assert status["in_cooldown"] and status["cooldown_reason"] == "429 per minute"
    assert 16 < status["cooldown_remaining"] <= 17
    for _ in range(3):  # every request now goes to the other key
        other = sh.acquire(km, "m", 1)
        assert other.key_id == "k1"
        sh.complete(other)
    km.clear_cooldown("k0")
    assert km.get_key_status("k0")["in_cooldown"] is False


def test_rate_limit_without_delay_backs_off_growing(manager_factory, sh) -> None:
    km = manager_factory(
        make_keys(1, rpm=100), window_seconds=30, cooldown_base_seconds=2, cooldown_max_seconds=5
    )
    leases = [sh.acquire(km, "m", 1) for _ in range(3)]
    seen = []
    for lease in leases:
        sh.fail(lease, "rate_limit")
        seen.append(round(km.get_key_status("k0")["cooldown_remaining"]))
    assert seen == [2, 4, 5]


def test_daily_quota_cools_until_the_reset(manager_factory, sh) -> None:
    km = manager_factory(make_keys(2), window_seconds=30)
    lease = sh.acquire(km, "m", 1, exclude=["k1"])
    sh.fail(lease, FailureKind.DAILY_QUOTA, reason="per-day quota")
    remaining = km.get_key_status("k0")["cooldown_remaining"]
    import time

    assert remaining == pytest.approx(km.limiter.days.next_reset() - time.time(), abs=2)


def test_auth_failure_disables_until_enabled(manager_factory, sh) -> None:
    km = manager_factory(make_keys(2), window_seconds=30)
    lease = sh.acquire(km, "m", 1, exclude=["k1"])
    assert sh.fail(lease, FailureKind.AUTH, reason="API_KEY_INVALID") == "disabled"
    status = km.get_key_status("k0")
    assert status["disabled"] and status["disabled_reason"] == "API_KEY_INVALID"
    assert status["rpm_usage"] == 0  # the refused request was released
    assert {sh.acquire(km, "m", 1).key_id for _ in range(3)} == {"k1"}
    km.enable_key("k0")
    assert km.get_key_status("k0")["disabled"] is False


def test_auth_failure_after_rotation_rereads_the_secret(manager_factory, sh) -> None:
    keys = make_keys(1)
    secrets = secrets_for(keys)
    km = manager_factory(keys, secrets=secrets, window_seconds=30)
    lease = sh.acquire(km, "m", 1)
    old = lease.api_key.get_secret_value()
    secrets["API_KEY_K0"] = "sk-rotated-value-123456"  # rotated in the store
    assert sh.fail(lease, FailureKind.AUTH) == "secret_rotated"
    assert km.get_key_status("k0")["disabled"] is False
    fresh = sh.acquire(km, "m", 1)
    assert fresh.api_key.get_secret_value() == "sk-rotated-value-123456" != old


def test_model_side_failures_do_not_blame_the_key(manager_factory, sh) -> None:
    km = manager_factory(make_keys(1, rpm=100), window_seconds=30)
    for kind in (FailureKind.SERVER, FailureKind.TIMEOUT, FailureKind.INVALID_REQUEST):
        assert sh.fail(sh.acquire(km, "m", 1), kind) == "none"
    status = km.get_key_status("k0")
    assert not status["in_cooldown"] and not status["disabled"]
    assert status["rpm_usage"] == 3  # the requests reached the provider: they count


def test_all_keys_cooling_or_disabled_reports_each_reason(manager_factory, sh) -> None:
    km = manager_factory(make_keys(3, rpm=1), window_seconds=30)
    km.mark_key_unhealthy("k0", 60, "maintenance")
    km.disable_key("k1", "revoked")
    sh.complete(sh.acquire(km, "m", 1))
    with pytest.raises(AllKeysExhaustedError) as info:
        sh.acquire(km, "m", 1)
    reasons = info.value.reasons
    assert reasons["k0"].startswith("cooldown: maintenance")
    assert reasons["k1"] == "disabled: revoked"
    assert reasons["k2"] == "rpm"
    assert 29 < info.value.retry_after <= 30


def test_every_key_disabled_means_never(manager_factory, sh) -> None:
    km = manager_factory(make_keys(1), window_seconds=30)
    km.disable_key("k0", "revoked")
    with pytest.raises(AllKeysExhaustedError) as info:
        sh.acquire(km, "m", 1, max_wait=10)
    assert info.value.retry_after is None
    assert "will have capacity" in str(info.value)


def test_missing_secret_skips_the_key(manager_factory, sh) -> None:
    keys = make_keys(2)
    secrets = secrets_for(keys)
    del secrets["API_KEY_K0"]
    km = manager_factory(keys, secrets=secrets, window_seconds=30)
    assert {sh.acquire(km, "m", 1).key_id for _ in range(4)} == {"k1"}
    assert km.get_key_status("k0")["rpm_usage"] == 0
    only = manager_factory(make_keys(1), secrets={}, window_seconds=30)
    with pytest.raises(SecretStoreError, match="API_KEY_K0"):
        sh.acquire(only, "m", 1)


def test_unknown_model_and_bad_arguments(manager_factory) -> None:
    km = manager_factory(make_keys(1))
    with pytest.raises(ConfigError, match="no active keys for model 'x'"):
        km.acquire("x")
    with pytest.raises(ConfigError, match="estimated_tokens must be >= 0"):
        km.acquire("m", -1)
    with pytest.raises(ConfigError, match="cooldown_seconds"):
        km.mark_key_unhealthy("k0", 0)


def test_round_robin_and_most_headroom(manager_factory) -> None:
    km = manager_factory(make_keys(3, rpm=30), window_seconds=30, strategy="round_robin")
    order = [km.acquire("m", 1).key_id for _ in range(6)]
    assert order == ["k0", "k1", "k2", "k0", "k1", "k2"]
    km.acquire("m", 1, strategy="most_headroom", exclude=["k1", "k2"]).complete()
    # k0 now has the least headroom: most_headroom avoids it
    assert km.acquire("m", 1, strategy="most_headroom").key_id in {"k1", "k2"}


def test_weighted_follows_weights(manager_factory) -> None:
    keys = [
        APIKey(key_id="heavy", model_name="m", provider="x", rpm=10_000, tpm=10**7, weight=3),
        APIKey(key_id="light", model_name="m", provider="x", rpm=10_000, tpm=10**7, weight=1),
    ]
    km = manager_factory(keys, window_seconds=30, strategy="weighted")
    counts = collections.Counter(km.acquire("m", 1).key_id for _ in range(400))
    assert counts["heavy"] > 2 * counts["light"] > 0


def test_add_remove_and_inactive_keys(manager_factory, tmp_path) -> None:
    keys = [
        *make_keys(1),
        APIKey(key_id="off", model_name="m", provider="x", rpm=5, tpm=5, active=False),
    ]
    km = manager_factory(keys, window_seconds=30)
    assert {km.acquire("m", 1).key_id for _ in range(3)} == {"k0"}
    new = APIKey(key_id="k9", model_name="m", provider="gemini", rpm=50, tpm=100)
    km.secret_store._environ["API_KEY_K9"] = "sk-test-k9"  # type: ignore[index]
    km.add_key(new)
    with pytest.raises(ConfigError, match="already exists"):
        km.add_key(new)
    assert "k9" in {km.acquire("m", 1).key_id for _ in range(4)}
    km.remove_key("k0")
    assert {km.acquire("m", 1).key_id for _ in range(3)} == {"k9"}
    assert [s["key_id"] for s in km.get_all_key_statuses()] == ["off", "k9"]


def test_set_keys_replaces_the_pool_at_once(manager_factory) -> None:
    km = manager_factory(make_keys(2), window_seconds=30)
    km.acquire("m", 1).complete()
    new = [APIKey(key_id=f"n{i}", model_name="m", provider="x", rpm=5, tpm=100) for i in range(50)]
    km.secret_store._environ.update({f"API_KEY_N{i}": f"sk-n{i}-0000000000" for i in range(50)})  # type: ignore[union-attr]
    km.set_keys(new)
    assert {km.acquire("m", 1).key_id for _ in range(20)} <= {k.key_id for k in new}
    with pytest.raises(ConfigError, match="duplicate key_id 'n0'"):
        km.set_keys([new[0], new[0]])
    assert len(km.keys) == 50  # nothing changed by the refused call


def test_usage_resets_when_a_keys_window_data_expired(manager_factory, prefix) -> None:
    """A key unused for days: its per-key data expired, so nothing is counted."""
    km = manager_factory(make_keys(1, rpm=2, tpm=1000), window_seconds=1)
    km.acquire("m", 400).complete()
    km.acquire("m", 400).complete()
    raw = km.store.primary.sync
    raw.delete(f"{prefix}v{LAYOUT_VERSION}:{{m}}:rpm:k0")  # as its expiry would
    lease = km.acquire("m", 900, max_wait=5)  # waits for the window, then counts from zero
    assert km.limiter.get_tpm_usage("k0")["used"] == 900
    assert km.limiter.get_rpm_usage("k0")["count"] == 1
    lease.complete()
