"""Careless numbers at the library's edge: refused with the library's errors, or bounded,
and the limiter keeps enforcing afterwards (real Redis and cluster)."""

from __future__ import annotations

import math
import time
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import make_keys, secrets_for
from rotating_llm import AllKeysExhaustedError, KeyManager, Settings
from rotating_llm._bounds import DELAY_MARGIN_S, MAX_LIMIT
from rotating_llm.errors import ConfigError, KeyFileError, LeaseError, RotatingLLMError
from rotating_llm.keys.loader import parse_keys
from rotating_llm.secrets import EnvSecretStore

EXTREMES: list[Any] = [
    2**63,
    -(2**63),
    10**30,
    MAX_LIMIT + 1,
    2**53 + 1,
    math.nan,
    math.inf,
    -math.inf,
    -1,
    True,
    False,
    1.7,
    "5",
    b"5",
    None,
    0,
    1,
    999,
]
values = st.one_of(st.sampled_from(EXTREMES), st.integers(), st.floats())
TPM, RPM = 1000, 5


def _manager(store_target: dict[str, Any]) -> KeyManager:
    keys = make_keys(1, rpm=RPM, tpm=TPM)
    opts = {**store_target, "key_prefix": f"b{uuid.uuid4().hex[:10]}:", "max_wait": 0}
    return KeyManager(
        keys, settings=Settings(**opts), secret_store=EnvSecretStore(environ=secrets_for(keys))
    )


def _still_enforcing(km: KeyManager) -> None:
    """More grants never exceed the limits, and a full key refuses."""
    km.clear_cooldown("k0")
    for _ in range(RPM + 2):
        try:
            km.acquire("m", 300).complete(300)
        except AllKeysExhaustedError:
            break
    used = km.limiter.get_tpm_usage("k0")["used"]
    count = km.limiter.get_rpm_usage("k0")["count"]
    assert 0 < used <= TPM or count == 1  # count 1: only the first lease, of more than 700
    assert 1 <= count <= RPM
    with pytest.raises(AllKeysExhaustedError):
        km.acquire("m", TPM)


def _own_error_or_nothing(call: Any, allowed: type[Exception]) -> bool:
    try:
        call()
    except RotatingLLMError as exc:
        assert isinstance(exc, allowed), exc
        return False
    return True


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(value=values, how=st.sampled_from(["complete", "fail_server", "fail_429"]))
def test_settlement_numbers(store_target: dict[str, Any], value: Any, how: str) -> None:
    km = _manager(store_target)
    try:
        lease = km.acquire("m", 10)
        if how == "complete":
            ok = _own_error_or_nothing(lambda: lease.complete(actual_tokens=value), LeaseError)
            valid = value is None or (type(value) is int and 0 <= value <= MAX_LIMIT)
            assert ok == valid
        elif how == "fail_server":
            _own_error_or_nothing(lambda: lease.fail("server", actual_tokens=value), LeaseError)
        else:
            _own_error_or_nothing(lambda: lease.fail("rate_limit", retry_after=value), LeaseError)
            cooling = km.get_key_status("k0")["cooldown_remaining"]
            cap = km.limiter.days.next_reset() - time.time() + DELAY_MARGIN_S
            assert 0 <= cooling <= cap + 1
        if lease.outcome is None:
            lease.complete()
        _still_enforcing(km)
    finally:
        km.close()


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=values)
def test_estimates(store_target: dict[str, Any], value: Any) -> None:
    km = _manager(store_target)
    try:
        try:
            km.acquire("m", value).complete()
        except RotatingLLMError as exc:
            assert isinstance(exc, ConfigError | AllKeysExhaustedError | RotatingLLMError)
        _still_enforcing(km)
    finally:
        km.close()


@given(value=values, field=st.sampled_from(["rpm", "tpm", "rpd", "weight"]))
def test_keys_file_numbers(value: Any, field: str) -> None:
    entry = {"key_id": "k0", "model_name": "m", "provider": "gemini", "rpm": 5, "tpm": 10}
    entry[field] = value
    try:
        (key,) = parse_keys({"keys": [entry]}, "keys.json")
    except KeyFileError as exc:
        assert field in str(exc)
        return
    got = getattr(key, field)
    if field == "weight":
        assert isinstance(got, float) and 0 < got <= 1e6
    elif got is not None:
        assert type(got) is int and 1 <= got <= MAX_LIMIT


def test_a_huge_retry_after_cools_until_the_next_reset_at_most(manager_factory) -> None:
    km = manager_factory(make_keys(2))
    km.acquire("m", 1).fail("rate_limit", retry_after=1e12)
    cooling = km.get_key_status("k0")["cooldown_remaining"]
    cap = km.limiter.days.next_reset() - time.time() + DELAY_MARGIN_S
    assert 60 < cooling <= cap + 1


def test_non_finite_retry_after_is_absent(manager_factory) -> None:
    """No delay given: the growing backoff applies, as when the provider gave none."""
    km = manager_factory(make_keys(1), cooldown_base_seconds=7)
    km.acquire("m", 1).fail("rate_limit", retry_after=math.inf)
    assert 5 < km.get_key_status("k0")["cooldown_remaining"] <= 7


def test_settings_beyond_a_week_are_refused(store_target: dict[str, Any]) -> None:
    keys = make_keys(1)
    with pytest.raises(ConfigError, match="window_seconds"):
        KeyManager(
            keys,
            settings=Settings(**store_target, window_seconds=1e30),
            secret_store=EnvSecretStore(environ=secrets_for(keys)),
        )
