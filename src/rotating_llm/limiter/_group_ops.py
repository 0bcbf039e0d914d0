"""Quota groups in the limiter: their script arguments, usage and health.

Mixed into :class:`~rotating_llm.limiter.RedisLimiter`. A group is counted by the same
scripts as a key, under the name ``@<group_id>`` (the schema's ``GROUP_MARK``) in its
pool's keys; see the schema module for the layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rotating_llm.errors import ConfigError
from rotating_llm.limiter._schema import GROUP_MARK

if TYPE_CHECKING:
    from rotating_llm.keys.models import APIKey, QuotaGroup
    from rotating_llm.limiter._journal import Journal
    from rotating_llm.limiter._limiter import KeyUsage
    from rotating_llm.storage import FailoverStore, Store

__all__ = ["GroupOps", "group_name"]


def group_name(group_id: str) -> str:
    """The name a group is counted under in its pool's keys."""
    return GROUP_MARK + group_id


def _group_limits(group: QuotaGroup) -> str:
    """The schema's LIMITS of a group: 0 for each limit it does not set, no weight, no group."""
    return f"{group.rpm or 0} {group.tpm or 0} {group.rpd or 0} {group.tpd or 0} 0 -"


class GroupOps:
    """The limiter's quota-group part (uses the limiter's key and group tables)."""

    _keys: dict[str, APIKey]
    _groups: dict[str, QuotaGroup]
    store: FailoverStore
    journal: Journal

    # provided by RedisLimiter
    def _ensure(self, store: Store, pool: str) -> None:  # pragma: no cover
        raise NotImplementedError

    def _health_args(
        self, store: Store, pool: str, key_id: str, action: str, seconds: float, reason: str
    ) -> list[Any]:  # pragma: no cover
        raise NotImplementedError

    if TYPE_CHECKING:  # (QueueOps's, after this class in RedisLimiter's bases)

        def _wake_local(self, pool: str, store: Store) -> None: ...

    def _cap(self, seconds: float) -> float:  # pragma: no cover
        raise NotImplementedError

    def usage(self, pool: str, key_ids: Sequence[str] = ()) -> dict[str, KeyUsage]:
        raise NotImplementedError  # pragma: no cover

    # -- arguments --------------------------------------------------------------------

    def _group_of(self, key: APIKey) -> QuotaGroup | None:
        return self._groups.get(key.quota_group) if key.quota_group else None

    def _limits_arg(self, key: APIKey) -> str:
        """The schema's LIMITS of ``key``, naming its group (``-``: none), and its tier
        unless it is 0."""
        group = self._group_of(key)
        name = group_name(group.group_id) if group else "-"
        out = f"{key.rpm} {key.tpm} {key.rpd or 0} {key.tpd or 0} {key.weight} {name}"
        return f"{out} {key.tier}" if key.tier else out

    def _group_register_args(self, keys: Sequence[APIKey]) -> list[str]:
        """Register pairs of the groups of ``keys`` (a pool's active keys): limits, member
        ids and the members' tiers (empty if all 0), separated by ``|``."""
        members: dict[str, list[APIKey]] = {}
        for key in keys:
            group = self._group_of(key)
            if group is not None:
                members.setdefault(group.group_id, []).append(key)
        out: list[str] = []
        for gid, ms in members.items():
            ids = ",".join(k.key_id for k in ms)
            tiers = sorted({k.tier for k in ms})
            t = "" if tiers == [0] else ",".join(map(str, tiers))
            out += [group_name(gid), f"{_group_limits(self._groups[gid])}|{ids}|{t}"]
        return out

    def _settle_tail(self, key_id: str) -> tuple[str, str]:
        """The settle script's ``daily`` flags and ``group`` for a reservation of ``key_id``."""
        key = self._keys.get(key_id)
        if key is None:
            return "", ""
        group = self._group_of(key)
        daily = ("k" if key.tpd else "") + ("g" if group is not None and group.tpd else "")
        return daily, group_name(group.group_id) if group is not None else ""

    # -- groups -----------------------------------------------------------------------

    def group_pool(self, group_id: str) -> str:
        """The pool (model) of ``group_id``'s keys (``ConfigError`` if no key names it)."""
        for key in self._keys.values():
            if key.quota_group == group_id and group_id in self._groups:
                return key.model_name
        raise ConfigError(f"unknown quota group {group_id!r} (or no key names it)")

    def group_usage(self, group_id: str) -> KeyUsage:
        """Usage of quota group ``group_id`` (its ``key_id`` is the group's name)."""
        pool = self.group_pool(group_id)
        name = group_name(group_id)
        return self.usage(pool, [name])[name]

    def group_health(
        self, group_id: str, action: str, seconds: float = 0.0, reason: str = ""
    ) -> float:
        """``cooldown`` (0: growing backoff), ``daily`` or ``clear`` every key of a group
        in one atomic call; returns the cooldown set, in seconds."""
        if action not in ("cooldown", "daily", "clear"):
            raise ConfigError(f"unknown group health action {action!r}")
        pool = self.group_pool(group_id)
        seconds = self._cap(seconds)
        name = group_name(group_id)

        def op(store: Store) -> tuple[float, Store]:
            self._ensure(store, pool)
            args = self._health_args(store, pool, name, action, seconds, reason)
            return int(store.call("health", store.pool_keys(pool), args)) / 1000, store

        out, store = self.store.run(f"group health ({action})", op)
        # (replayed into a store that lost it, as a key's cooldown is)
        self.journal.health(name, "clear" if action == "clear" else "cooldown", out, reason)
        self._wake_local(pool, store)  # (a cleared group's keys are back)
        return out

    def cool_group(
        self, group_id: str, seconds: float | None, reason: str, *, daily: bool = False
    ) -> float:
        """Cool every key of ``group_id`` down: for ``seconds`` (``None``: the group's
        growing backoff), or until the next daily reset with ``daily`` (a per-project
        quota of the provider). Returns the cooldown set, in seconds."""
        if daily:
            return self.group_health(group_id, "daily", 0.0, reason)
        return self.group_health(group_id, "cooldown", seconds or 0.0, reason)
