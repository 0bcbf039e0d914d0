"""The Lua limiter against a plain Python model of sliding windows (hypothesis).

The embedded store runs the very same scripts, and its TIME follows a fake clock, so
arbitrary interleavings of time steps, acquisitions, completions and releases can be
replayed exactly. At every step the limiter must admit exactly when the model has a key
with room, pick only such a key, and never promise capacity later than the model does.
"""

from __future__ import annotations

import pytest
from _limiter_model import Entry, Model, fake_clock, replay_manager
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rotating_llm import AllKeysExhaustedError, APIKey

step = st.tuples(
    st.integers(0, 700_000),  # microseconds to advance
    st.integers(1, 40),  # estimated tokens
    st.sampled_from(["none", "complete", "release"]),  # what to do with the oldest open lease
    st.integers(0, 40),  # actual tokens on completion
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    limits=st.lists(st.tuples(st.integers(1, 4), st.integers(20, 80)), min_size=1, max_size=3),
    steps=st.lists(step, min_size=1, max_size=40),
    strategy=st.sampled_from(["most_headroom", "round_robin", "weighted"]),
)
@pytest.mark.slow
def test_limiter_matches_the_model(monkeypatch: pytest.MonkeyPatch, limits, steps, strategy) -> None:
    clock = fake_clock(monkeypatch)
    keys = [
        APIKey(key_id=f"k{i}", model_name="m", provider="x", rpm=r, tpm=t)
        for i, (r, t) in enumerate(limits)
    ]
    km = replay_manager(keys, strategy)
    model = Model({k.key_id: k.rpm for k in keys}, {k.key_id: k.tpm for k in keys})
    open_leases = []
    max_tpm = max(k.tpm for k in keys)
    for dt, est, settle, actual in steps:
        clock[0] += dt
        now = clock[0]
        if open_leases and settle != "none":
            lease, rid = open_leases.pop(0)
            box = model.live(lease.key_id, now)
            if settle == "complete":
                lease.complete(actual)
                if rid in box:  # still in the window: re-dated to now, real tokens
                    box[rid] = Entry(now, actual)
            else:
                lease.release()
                box.pop(rid, None)
        if est > max_tpm:
            continue
        fitting = {k.key_id for k in keys if model.fits(k.key_id, est, now)}
        try:
            lease = km.acquire("m", est, max_wait=0)
        except AllKeysExhaustedError as exc:
            assert not fitting, f"refused while {fitting} had room"
            earliest = min(model.fit_time(k.key_id, est, now) for k in keys)
            assert exc.retry_after is not None
            assert exc.retry_after * 1e6 <= earliest - now + 1  # never later than the truth
            continue
        assert lease.key_id in fitting, f"picked {lease.key_id}, room only on {fitting}"
        rid = lease.reservation.reservation_id
        model.live(lease.key_id, now)[rid] = Entry(now, est)
        open_leases.append((lease, rid))
    km.close()
