"""Daily token limits (``tpd``): counted from reservations, corrected by settlements,
reset with RPD at the day boundary; a Gemini per-day 429 cools the key until the reset."""

from __future__ import annotations

import pytest
from _days import set_day, store_now_us

from conftest import make_keys
from rotating_llm import AllKeysExhaustedError
from rotating_llm.failures import FailureKind, classify_http

_H = 3_600_000_000


def test_tpd_counts_settled_tokens_and_refuses_until_the_reset(make) -> None:
    km = make(make_keys(1, rpm=100, tpm=10_000, tpd=100))
    now = store_now_us(km)
    set_day(km, now - _H, now + _H // 2)
    km.acquire("m", 60).complete(actual_tokens=30)  # settled below the reservation
    assert km.get_key_status("k0")["tpd_usage"] == 30
    km.acquire("m", 40).complete(actual_tokens=60)  # and above it
    st = km.get_key_status("k0")
    assert (st["tpd_usage"], st["tpd_limit"]) == (90, 100)
    with pytest.raises(AllKeysExhaustedError) as info:
        km.acquire("m", 20)
    assert info.value.reasons == {"k0": "tpd"}
    # capacity returns at the (fake) next reset, half an hour away
    assert info.value.retry_after == pytest.approx(1800, abs=5)
    lease = km.acquire("m", 10)  # exactly fills the day
    lease.release()  # ... and a release gives it back
    assert km.get_key_status("k0")["tpd_usage"] == 90
    assert km.limiter.get_tpd_usage("k0") == {
        "key_id": "k0", "used": 90, "limit": 100, "timezone": km.settings.rpd_timezone,
    }  # fmt: skip


def test_tpd_resets_at_the_day_boundary(make) -> None:
    km = make(make_keys(1, rpm=100, tpm=10_000, tpd=100))
    now = store_now_us(km)
    set_day(km, now - _H, now + _H)
    late = km.acquire("m", 60)  # reserved today, settled tomorrow
    km.acquire("m", 40).complete()
    with pytest.raises(AllKeysExhaustedError) as info:
        km.acquire("m", 1)
    assert info.value.reasons == {"k0": "tpd"}
    # the reset passes: today started a moment ago
    set_day(km, store_now_us(km) - 1000, now + 25 * _H)
    assert km.get_key_status("k0")["tpd_usage"] == 0
    # a reservation of yesterday settled today changes nothing of today's count
    late.complete(actual_tokens=10)
    assert km.get_key_status("k0")["tpd_usage"] == 0
    km.acquire("m", 100).complete()
    with pytest.raises(AllKeysExhaustedError) as info:
        km.acquire("m", 1)
    assert info.value.reasons == {"k0": "tpd"}
    assert km.get_key_status("k0")["tpd_usage"] == 100


def test_gemini_per_day_token_quota_cools_the_key_until_the_reset(make) -> None:
    km = make(make_keys(2, rpm=100))
    now = store_now_us(km)
    set_day(km, now - _H, now + 2 * _H)
    body = {
        "error": {
            "code": 429,
            "status": "RESOURCE_EXHAUSTED",
            "message": "You exceeded your current quota. Quota exceeded for metric: "
            "generativelanguage.googleapis.com/generate_content_free_tier_input_token_count",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [
                        {
                            "quotaMetric": "generativelanguage.googleapis.com/"
                            "generate_content_free_tier_input_token_count",
                            "quotaId": "GenerateContentInputTokensPerModelPerDay-FreeTier",
                            "quotaDimensions": {"model": "gemini-2.0-flash", "location": "global"},
                            "quotaValue": "1000000",
                        }
                    ],
                },
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "17s"},
            ],
        }
    }
    found = classify_http(429, body)
    assert found.kind is FailureKind.DAILY_QUOTA  # not a 17 s rate limit
    lease = km.acquire("m", 1, exclude=["k1"])
    lease.fail(found.kind, retry_after=found.retry_after, reason=found.reason)
    st = km.get_key_status("k0")
    assert st["in_cooldown"] and "per-day" in st["cooldown_reason"]
    assert st["cooldown_remaining"] == pytest.approx(2 * 3600, abs=5)
    assert km.acquire("m", 1).key_id == "k1"


def test_a_completion_after_the_window_still_corrects_the_day(make) -> None:
    """A call slower than the window: its reservation left the window (not trimmed yet),
    so it is not re-dated into it, but its real tokens still count against the day,
    once, for the key and for its quota group."""
    import time

    from rotating_llm import QuotaGroup

    keys = [k.model_copy(update={"quota_group": "p"}) for k in make_keys(1, rpm=100, tpd=1000)]
    km = make(keys, [QuotaGroup(group_id="p", rpm=100, tpd=1000)], window_seconds=0.5)
    lease = km.acquire("m", 10)
    time.sleep(0.7)  # out of the window; nothing else touched the key, so not trimmed
    lease.complete(actual_tokens=400)
    st = km.get_key_status("k0")
    assert st["tpd_usage"] == 400
    assert st["rpm_usage"] == 0  # not dated back into the window
    assert km.get_group_status("p")["tpd_usage"] == 400
    lease.complete(actual_tokens=400)  # settling again changes nothing more
    assert km.get_key_status("k0")["tpd_usage"] == 400
    assert km.get_group_status("p")["tpd_usage"] == 400
