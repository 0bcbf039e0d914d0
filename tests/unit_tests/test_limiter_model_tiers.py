"""The Lua limiter against a Python model with tiers, a quota group and affinities.

Like test_limiter_model (same replay on the embedded store under a fake clock), but keys
are spread over tiers, some share a quota group, and acquires name conversations. At
every step: a grant is on a key that fits (its limits and its group's: an affinity
never bypasses them), of the lowest tier that has a key that fits; the conversation's
key is kept exactly when it fits and no lower tier has room; a refusal comes only when
no key fits, and never promises capacity later than the model does.
"""

from __future__ import annotations

import pytest
from _limiter_model import Entry, Model, fake_clock, replay_manager
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rotating_llm import AllKeysExhaustedError, APIKey, QuotaGroup

GROUP = "@g"


step = st.tuples(
    st.integers(0, 700_000),  # microseconds to advance
    st.integers(1, 40),  # estimated tokens
    st.sampled_from(["none", "complete", "release"]),  # what to do with the oldest open lease
    st.integers(0, 40),  # actual tokens on completion
    st.sampled_from([None, "a", "b", "c"]),  # the conversation (None: no affinity)
)
key_spec = st.tuples(
    st.integers(1, 3),  # rpm
    st.integers(20, 80),  # tpm
    st.sampled_from([0, 0, 1, 5]),  # tier
    st.booleans(),  # in the quota group
)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    specs=st.lists(key_spec, min_size=1, max_size=5),
    group=st.tuples(st.integers(1, 4), st.integers(40, 120)),
    steps=st.lists(step, min_size=1, max_size=40),
    strategy=st.sampled_from(["most_headroom", "round_robin", "weighted"]),
)
@pytest.mark.slow
def test_tiers_groups_and_affinity_match_the_model(
    monkeypatch: pytest.MonkeyPatch, specs, group, steps, strategy
) -> None:
    clock = fake_clock(monkeypatch)
    keys = [
        APIKey(key_id=f"k{i}", model_name="m", provider="x", rpm=r, tpm=t, tier=tier,
               quota_group="g" if grouped else None)
        for i, (r, t, tier, grouped) in enumerate(specs)
    ]  # fmt: skip
    grouped = {k.key_id for k in keys if k.quota_group}
    groups = [QuotaGroup(group_id="g", rpm=group[0], tpm=group[1])] if grouped else []
    km = replay_manager(keys, strategy, groups)
    tier = {k.key_id: k.tier for k in keys}
    model = Model(
        {k.key_id: k.rpm for k in keys} | {GROUP: group[0]},
        {k.key_id: k.tpm for k in keys} | {GROUP: group[1]},
    )
    home: dict[str, str] = {}  # conversation -> the key that last served it
    open_leases = []
    max_tpm = max(k.tpm for k in keys)

    def fits(kid: str, est: int, now: int) -> bool:
        return model.fits(kid, est, now) and (kid not in grouped or model.fits(GROUP, est, now))

    def truth(kid: str, est: int, now: int) -> float:
        at = model.fit_time(kid, est, now)
        return max(at, model.fit_time(GROUP, est, now)) if kid in grouped else at

    for dt, est, settle, actual, conv in steps:
        clock[0] += dt
        now = clock[0]
        if open_leases and settle != "none":
            lease, rid = open_leases.pop(0)
            boxes = [(model.live(lease.key_id, now), rid)]
            if lease.key_id in grouped:  # the group names it after its key too
                boxes.append((model.live(GROUP, now), f"{rid}@{lease.key_id}"))
            for box, name in boxes:
                if settle == "complete" and name in box:  # in the window: re-dated, real tokens
                    box[name] = Entry(now, actual)
                elif settle == "release":
                    box.pop(name, None)
            (lease.complete(actual) if settle == "complete" else lease.release())
        if est > max_tpm:
            continue
        fitting = {kid for kid in tier if fits(kid, est, now)}
        try:
            lease = km.acquire("m", est, max_wait=0, affinity=conv)
        except AllKeysExhaustedError as exc:
            assert not fitting, f"refused while {fitting} had room"
            earliest = min(truth(kid, est, now) for kid in tier)
            if exc.retry_after is not None:
                assert exc.retry_after * 1e6 <= earliest - now + 1  # never later than the truth
            else:
                assert earliest == float("inf")
            continue
        kid = lease.key_id
        assert kid in fitting, f"picked {kid}, room only on {fitting} (affinity {conv})"
        lowest = min(tier[k] for k in fitting)
        assert tier[kid] == lowest, f"tier {tier[kid]} granted while tier {lowest} had room"
        if conv is None:
            assert lease.affinity_held is None
        else:
            keep = home.get(conv)
            kept = keep is not None and keep in fitting and tier[keep] == lowest
            assert lease.affinity_held is kept and (not kept or kid == keep)
            home[conv] = kid
        rid = lease.reservation.reservation_id
        model.live(kid, now)[rid] = Entry(now, est)
        if kid in grouped:
            model.live(GROUP, now)[f"{rid}@{kid}"] = Entry(now, est)
        open_leases.append((lease, rid))
    km.close()
