"""Quota groups: which keys share which limits, checked once for files and code alike."""

from __future__ import annotations

from collections.abc import Sequence

from rotating_llm.keys.models import APIKey, QuotaGroup

__all__ = ["group_problem", "group_table"]


def group_table(groups: Sequence[QuotaGroup]) -> tuple[dict[str, QuotaGroup], str | None]:
    """``{group_id: group}``, and the first duplicate ``group_id`` (``None``: none)."""
    table: dict[str, QuotaGroup] = {}
    for group in groups:
        if group.group_id in table:
            return table, group.group_id
        table[group.group_id] = group
    return table, None


def group_problem(keys: Sequence[APIKey], groups: dict[str, QuotaGroup]) -> tuple[int, str] | None:
    """The first key that names an unknown group, or whose group holds keys of another
    model (a group lives in one pool), as ``(index in keys, message)``; ``None``: none."""
    model_of: dict[str, tuple[str, int]] = {}
    for i, key in enumerate(keys):
        gid = key.quota_group
        if gid is None:
            continue
        if gid not in groups:
            return i, f"unknown quota group {gid!r}; quota_groups: {sorted(groups)}"
        first = model_of.setdefault(gid, (key.model_name, i))
        if first[0] != key.model_name:
            return i, (
                f"quota group {gid!r} already has keys of model {first[0]!r} "
                f"(keys[{first[1]}]), this one is {key.model_name!r}: a group's keys must "
                "share one model (declare one group per model)"
            )
    return None
