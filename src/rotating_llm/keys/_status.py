"""Status dictionaries of keys, and the per-key reasons of an exhausted pool."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rotating_llm.keys.models import APIKey, QuotaGroup
from rotating_llm.limiter import KeyUsage

__all__ = ["exhausted_reasons", "group_status", "key_status"]


def group_status(
    group: QuotaGroup, model: str | None, members: Sequence[str], usage: KeyUsage | None
) -> dict[str, Any]:
    """Usage and limits of a quota group: all its keys together."""
    u = usage or KeyUsage(group.group_id, False, 0, 0, 0, 0.0, None, None, None)
    return {
        "group_id": group.group_id,
        "model_name": model,
        "key_ids": list(members),
        "rpm_usage": u.rpm_count,
        "tpm_usage": u.tpm_used,
        "rpd_usage": u.rpd_count,
        "tpd_usage": u.tpd_used,
        "rpm_limit": group.rpm,
        "tpm_limit": group.tpm,
        "rpd_limit": group.rpd,
        "tpd_limit": group.tpd,
        "next_capacity_in": u.next_capacity_in,
    }


def key_status(
    key: APIKey, usage: KeyUsage | None, group: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The original design's status dict for ``key`` (plus limits, health and next
    capacity, and its quota group's status as ``group``)."""
    u = usage or KeyUsage(key.key_id, False, 0, 0, 0, 0.0, None, None, None)
    return {
        "key_id": key.key_id,
        "model_name": key.model_name,
        "provider": key.provider,
        "active": key.active,
        "in_cooldown": u.cooldown_remaining > 0,
        "cooldown_remaining": u.cooldown_remaining,
        "cooldown_reason": u.cooldown_reason,
        "disabled": u.disabled_reason is not None,
        "disabled_reason": u.disabled_reason,
        "rpm_usage": u.rpm_count,
        "tpm_usage": u.tpm_used,
        "rpd_usage": u.rpd_count,
        "tpd_usage": u.tpd_used,
        "rpm_limit": key.rpm,
        "tpm_limit": key.tpm,
        "rpd_limit": key.rpd,
        "tpd_limit": key.tpd,
        "weight": key.weight,
        "tags": dict(key.tags),
        "base_url": key.base_url,
        "next_capacity_in": u.next_capacity_in,
        "quota_group": key.quota_group,
        "group": group,
        "tier": key.tier,
    }


def _full(limits: QuotaGroup | APIKey, u: KeyUsage) -> str:
    """Which limit of a key or group the usage ``u`` fills (``tpm`` when none is)."""
    if limits.rpm is not None and u.rpm_count >= limits.rpm:
        return "rpm"
    if limits.rpd and u.rpd_count >= limits.rpd:
        return "rpd"
    if limits.tpd and u.tpd_used >= limits.tpd:
        return "tpd"
    return "tpm"


def exhausted_reasons(
    keys: Sequence[APIKey],
    usage: Mapping[str, KeyUsage],
    scanned: Mapping[str, str],
    exclude: Sequence[str],
    groups: Mapping[str, QuotaGroup] | None = None,
) -> dict[str, str]:
    """Why each key of an exhausted pool could not serve, for ``AllKeysExhaustedError``
    (``usage`` of a group under its name ``@<group_id>``)."""
    out: dict[str, str] = {}
    for key in keys:
        u = usage.get(key.key_id)
        group = (groups or {}).get(key.quota_group or "")
        gu = usage.get(f"@{key.quota_group}") if group is not None else None
        if key.key_id in exclude:
            out[key.key_id] = "excluded"
        elif u is not None and u.disabled_reason:
            out[key.key_id] = f"disabled: {u.disabled_reason}"
        elif u is not None and u.cooldown_remaining > 0:
            out[key.key_id] = f"cooldown: {u.cooldown_reason or ''} ({u.cooldown_remaining:.1f}s)"
        elif key.key_id in scanned:
            out[key.key_id] = scanned[key.key_id]
        elif u is not None and (u.next_capacity_in or 0) > 0 and _full(key, u) != "tpm":
            out[key.key_id] = _full(key, u)
        elif group is not None and gu is not None and (gu.next_capacity_in or 0) > 0:
            out[key.key_id] = f"group {_full(group, gu)}"
        else:
            out[key.key_id] = "tpm"
    return out
