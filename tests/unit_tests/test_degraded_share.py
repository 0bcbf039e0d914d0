"""The degraded share's arithmetic: the shares of all processes add up to the limit."""

from __future__ import annotations

import pytest

from rotating_llm.limiter._degraded import degraded_tail, peer_rank, share


@pytest.mark.parametrize("limit", [1, 2, 5, 7, 60, 1000, 99_991])
@pytest.mark.parametrize("n", [1, 2, 3, 8, 16, 100])
def test_shares_add_up_to_the_limit_exactly(limit: int, n: int) -> None:
    for name in ("k0", "k1", "@grp", "a-much-longer-key-id"):
        parts = [share(limit, name, n, rank) for rank in range(n)]
        assert sum(parts) == limit
        assert max(parts) - min(parts) <= 1  # as even as whole requests allow


def test_no_limit_stays_no_limit() -> None:
    assert share(0, "k0", 5, 3) == 0


def test_with_more_processes_than_requests_keys_go_to_different_processes() -> None:
    n = 8
    keys = [f"k{i}" for i in range(16)]
    holders = {rank for rank in range(n) for k in keys if share(1, k, n, rank)}
    assert len(holders) > 1  # not every key's one request goes to the same process


def test_peer_rank_counts_this_process_once() -> None:
    assert peer_rank(["b", "a", "c"], "b") == (3, 1)
    assert peer_rank(["a", "c"], "b") == (3, 1)  # not seen yet: counted anyway
    assert peer_rank([], "z") == (1, 0)


def test_degraded_tail_cuts_limits_and_drops_keys_without_a_share() -> None:
    tail = ["@g", "4 1000 0 0 0 -|k0,k1", "k0", "9 300 0 0 1 @g", "k1", "1 300 0 0 1 @g",
            "k2", "3 90 10 0 2 - 1"]  # fmt: skip
    n = 3
    for rank in range(n):
        out = degraded_tail(tail, n, rank)
        pairs = dict(zip(out[::2], out[1::2], strict=True))
        assert pairs["k2"].split(" ")[4:] == ["2", "-", "1"]  # weight, group, tier kept
        assert int(pairs["k2"].split(" ")[0]) in (1,)
        assert int(pairs["k2"].split(" ")[2]) in (3, 4)  # rpd 10 over 3
        if "@g" not in pairs:  # the group's 4 requests left this process none
            assert "k0" not in pairs and "k1" not in pairs
        if "k1" in pairs:
            assert pairs["k1"].startswith("1 ")
    # over all processes: each limit's shares add up to it
    total: dict[str, int] = {}
    for rank in range(n):
        out = degraded_tail(tail, n, rank)
        for name, value in zip(out[::2], out[1::2], strict=True):
            total[name] = total.get(name, 0) + int(value.split(" ")[0])
    assert total["@g"] == 4 and total["k0"] == 9 and total["k1"] == 1 and total["k2"] == 3
    assert degraded_tail(tail, 1, 0) == tail


def test_a_tenant_cap_is_cut_to_shares_that_add_up_to_it() -> None:
    from rotating_llm.limiter._degraded import tenant_share

    name, n = "~t:0123456789abcdef01234567", 3
    cuts = [tenant_share("7 1000 0 0 1 -", name, n, rank) for rank in range(n)]
    assert all(c is not None for c in cuts)
    parts = [c.split(" ") for c in cuts if c is not None]
    assert sum(int(p[0]) for p in parts) == 7 and sum(int(p[1]) for p in parts) == 1000
    assert all(p[2:] == ["0", "0", "1", "-"] for p in parts)  # (no daily caps appear)
    # a process with no share of the cap refuses the tenant (None), never "no cap" (0)
    cuts = [tenant_share("2 0 0 0 1 -", name, n, rank) for rank in range(n)]
    assert cuts.count(None) == 1 and sorted(c for c in cuts if c) == ["1 0 0 0 1 -"] * 2
    assert tenant_share("", name, n, 0) == ""  # no cap: none
    assert tenant_share("7 0 0 0 1 -", name, 1, 0) == "7 0 0 0 1 -"  # alone: the whole cap


def test_the_heartbeat_reads_the_named_and_the_latest_capped_tenants() -> None:
    from rotating_llm import Settings
    from rotating_llm.keys.models import TenantCap
    from rotating_llm.limiter._queue import tenant_digest
    from rotating_llm.limiter._tenants import SNAPSHOT_TENANTS, TenantCaps

    caps = TenantCaps(Settings(tenant_rpm=5))
    caps.set_caps([TenantCap(tenant="alice", rpm=3), TenantCap(tenant="*", rpm=4)])
    assert caps.capped("m") == ["~t:" + tenant_digest("alice")]  # named in the file
    for i in range(SNAPSHOT_TENANTS + 10):
        assert caps.args("m", f"t{i}", []) == "4 0 0 0 1 -"
    seen = caps.capped("m")
    assert len(seen) == SNAPSHOT_TENANTS and seen[0] == "~t:" + tenant_digest("alice")
    assert seen[1] == "~t:" + tenant_digest(f"t{SNAPSHOT_TENANTS + 9}")  # the latest first
    assert caps.capped("other") == ["~t:" + tenant_digest("alice")]


def test_a_refusal_for_want_of_a_share_names_the_limit_left_without_one() -> None:
    """rpm 10 and tpm 2 over 3 processes: every process has a share of the rpm, one has
    none of the tpm, and that is the limit its refusal names (review finding: it named
    rpm whenever the rpm was set)."""
    from rotating_llm.limiter._degraded import tenant_share, unshared

    name, n = "~t:abc", 3
    cap = "10 2 0 0 1 -"
    without = [rank for rank in range(n) if tenant_share(cap, name, n, rank) is None]
    assert len(without) == 1
    assert unshared(cap, name, n, without[0]) == "tpm"
    assert [unshared("2 0 0 0 1 -", name, n, r) for r in range(n)].count("rpm") == n
