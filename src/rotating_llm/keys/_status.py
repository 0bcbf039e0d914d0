"""Status dictionaries of keys, and the per-key reasons of an exhausted pool."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rotating_llm.keys.models import APIKey
from rotating_llm.limiter import KeyUsage

__all__ = ["exhausted_reasons", "key_status"]


def key_status(key: APIKey, usage: KeyUsage | None) -> dict[str, Any]:
    """The original design's status dict for ``key`` (plus limits, health and next capacity)."""
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
    }


def exhausted_reasons(
    keys: Sequence[APIKey],
    usage: Mapping[str, KeyUsage],
    scanned: Mapping[str, str],
    exclude: Sequence[str],
) -> dict[str, str]:
    """Why each key of an exhausted pool could not serve, for ``AllKeysExhaustedError``."""
    out: dict[str, str] = {}
    for key in keys:
        u = usage.get(key.key_id)
        if key.key_id in exclude:
            out[key.key_id] = "excluded"
        elif u is not None and u.disabled_reason:
            out[key.key_id] = f"disabled: {u.disabled_reason}"
        elif u is not None and u.cooldown_remaining > 0:
            out[key.key_id] = f"cooldown: {u.cooldown_reason or ''} ({u.cooldown_remaining:.1f}s)"
        elif key.key_id in scanned:
            out[key.key_id] = scanned[key.key_id]
        elif u is not None and u.rpm_count >= key.rpm:
            out[key.key_id] = "rpm"
        elif u is not None and key.rpd and u.rpd_count >= key.rpd:
            out[key.key_id] = "rpd"
        elif u is not None and key.tpd and u.tpd_used >= key.tpd:
            out[key.key_id] = "tpd"
        else:
            out[key.key_id] = "tpm"
    return out
