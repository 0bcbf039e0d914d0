"""Status dictionaries of keys, and the per-key reasons of an exhausted pool."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rotating_llm.keys.models import APIKey, QuotaGroup
from rotating_llm.limiter import KeyUsage

if TYPE_CHECKING:
    from rotating_llm.limiter._learn_ops import LearnedRecord

__all__ = [
    "exhausted_reasons",
    "group_status",
    "key_status",
    "learned_group",
    "learned_summary",
    "limits_view",
    "with_learned",
]

_KINDS = ("rpm", "tpm", "rpd", "tpd")


def limits_view(
    limits: QuotaGroup | APIKey, learned: Mapping[str, LearnedRecord] | None
) -> dict[str, dict[str, Any]]:
    """Each limit's configured (the file's) and effective value and its source: ``file``
    or ``learned: <when>, from <answer>`` (a limit the file does not set: ``None``)."""
    out: dict[str, dict[str, Any]] = {}
    for kind in _KINDS:
        configured = getattr(limits, kind)
        rec = (learned or {}).get(kind)
        if rec is not None and rec.applies_over(configured):
            when = dt.datetime.fromtimestamp(rec.learned_at, dt.timezone.utc)
            stamp = when.isoformat(timespec="seconds").replace("+00:00", "Z")
            out[kind] = {
                "configured": configured,
                "effective": rec.value,
                "source": f"learned: {stamp}, from {rec.source}",
                "expires_in": round(rec.expires_in, 3),
            }
        else:
            out[kind] = {"configured": configured, "effective": configured, "source": "file"}
    return out


def with_learned(limits: Any, learned: Mapping[str, LearnedRecord] | None) -> Any:
    """A copy of ``limits`` (an ``APIKey`` or ``QuotaGroup``) with its effective limits."""
    view = limits_view(limits, learned)
    update = {k: v["effective"] for k, v in view.items() if v["source"] != "file"}
    return limits.model_copy(update=update) if update else limits


def _idle(usage_id: str) -> KeyUsage:
    """The usage of a key or group nothing has used yet."""
    return KeyUsage(usage_id, False, 0, 0, 0, 0.0, None, None, None)


def learned_group(
    learned: Mapping[str, Mapping[str, LearnedRecord]],
    key_id: str,
    usage: Mapping[str, KeyUsage],
) -> dict[str, Any] | None:
    """The learned group ``key_id`` was put into (its per-project 429s showed others use
    its project): a group status without configured limits, plus where it was learned;
    None: in none."""
    rec = learned.get(key_id, {}).get("grp")
    if rec is None or rec.group is None:
        return None
    status = group_status(
        QuotaGroup.model_construct(group_id=rec.group),
        None,
        sorted(k for k, recs in learned.items() if "grp" in recs),
        usage.get(rec.group),
        learned.get(rec.group),
    )
    status["source"] = f"learned, from {rec.source}"
    return status


def learned_summary(status: Mapping[str, Any]) -> str:
    """The learned limits of a key's or group's status, short: ``"rpm 4 (file 10)"``
    (``""`` when every limit is the file's)."""
    parts = []
    for kind, view in (status.get("limits") or {}).items():
        if view["source"] != "file":
            parts.append(f"{kind} {view['effective']} (file {view['configured'] or '-'})")
    return ", ".join(parts)


def group_status(
    group: QuotaGroup,
    model: str | None,
    members: Sequence[str],
    usage: KeyUsage | None,
    learned: Mapping[str, LearnedRecord] | None = None,
) -> dict[str, Any]:
    """Usage and limits of a quota group: all its keys together (``*_limit``: the
    effective limits; ``limits``: configured, effective and source of each)."""
    u = usage or _idle(group.group_id)
    view = limits_view(group, learned)
    return {
        "group_id": group.group_id,
        "model_name": model,
        "key_ids": list(members),
        "rpm_usage": u.rpm_count,
        "tpm_usage": u.tpm_used,
        "rpd_usage": u.rpd_count,
        "tpd_usage": u.tpd_used,
        "rpm_limit": view["rpm"]["effective"],
        "tpm_limit": view["tpm"]["effective"],
        "rpd_limit": view["rpd"]["effective"],
        "tpd_limit": view["tpd"]["effective"],
        "limits": view,
        "next_capacity_in": u.next_capacity_in,
    }


def key_status(
    key: APIKey,
    usage: KeyUsage | None,
    group: dict[str, Any] | None = None,
    learned: Mapping[str, LearnedRecord] | None = None,
    learned_grp: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The original design's status dict for ``key`` (plus limits, health and next
    capacity, and its quota group's status as ``group``). ``*_limit`` are the effective
    limits; ``limits`` gives each one's configured and effective value and source."""
    u = usage or _idle(key.key_id)
    view = limits_view(key, learned)
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
        "rpm_limit": view["rpm"]["effective"],
        "tpm_limit": view["tpm"]["effective"],
        "rpd_limit": view["rpd"]["effective"],
        "tpd_limit": view["tpd"]["effective"],
        "limits": view,
        "weight": key.weight,
        "tags": dict(key.tags),
        "base_url": key.base_url,
        "next_capacity_in": u.next_capacity_in,
        "quota_group": key.quota_group,
        "group": group,
        "learned_group": learned_grp,
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
