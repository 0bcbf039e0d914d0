"""The keys and groups the limiter turns into config strings, checked again.

A model built without validation (``APIKey.model_copy(update=...)``, ``model_construct``)
can hold any value; a limit or tier the scripts cannot parse would make every decision
of its pool fail. So the limiter checks what it registers, and how many tiers a pool has
(a refusal looks at the availability set of each).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from rotating_llm._bounds import MAX_LIMIT, MAX_POOL_TIERS, MAX_TIER, MAX_WEIGHT
from rotating_llm.errors import ConfigError

if TYPE_CHECKING:
    from rotating_llm.keys.models import APIKey, QuotaGroup

__all__ = ["check_group", "check_key", "check_keys", "pool_tiers"]


def _int(value: Any, what: str, low: int, high: int, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{what} must be an integer from {low} to {high}, got {value!r:.40}")


def check_key(key: APIKey) -> None:
    """Raise ``ConfigError`` naming the key and field if a limit, weight or tier of
    ``key`` is out of its bounds."""
    name = f"key {key.key_id!r}:"
    for field in ("rpm", "tpm", "rpd", "tpd"):
        _int(getattr(key, field), f"{name} {field}", 1, MAX_LIMIT, field in ("rpd", "tpd"))
    _int(key.tier, f"{name} tier", 0, MAX_TIER)
    w = key.weight
    ok = isinstance(w, (int, float)) and not isinstance(w, bool)
    if not (ok and math.isfinite(w) and 0 < w <= MAX_WEIGHT):
        raise ConfigError(f"{name} weight must be more than 0 and at most {MAX_WEIGHT:g}")


def check_group(group: QuotaGroup) -> None:
    """Raise ``ConfigError`` naming the group and field if a limit of it is out of bounds."""
    for field in ("rpm", "tpm", "rpd", "tpd"):
        what = f"quota group {group.group_id!r}: {field}"
        _int(getattr(group, field), what, 1, MAX_LIMIT, optional=True)


def pool_tiers(pool: str, keys: Iterable[APIKey]) -> list[int]:
    """The distinct tiers of a pool's keys, ascending (``ConfigError`` beyond
    :data:`~rotating_llm._bounds.MAX_POOL_TIERS`)."""
    tiers = sorted({k.tier for k in keys})
    if len(tiers) > MAX_POOL_TIERS:
        raise ConfigError(
            f"pool {pool!r} has {len(tiers)} distinct tiers {tiers[:12]}; "
            f"at most {MAX_POOL_TIERS} are allowed"
        )
    return tiers


def check_keys(keys: Iterable[APIKey], groups: Iterable[QuotaGroup]) -> None:
    """Every check above, of every key, group and pool (``ConfigError`` at the first
    that fails)."""
    by_pool: dict[str, list[APIKey]] = {}
    for key in keys:
        check_key(key)
        if key.active:
            by_pool.setdefault(key.model_name, []).append(key)
    for group in groups:
        check_group(group)
    for pool, members in by_pool.items():
        pool_tiers(pool, members)
