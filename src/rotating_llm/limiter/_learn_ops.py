"""Limits learned from the provider, in the limiter: what a provider's answer changes.

Mixed into :class:`~rotating_llm.limiter.RedisLimiter`. The ``learn`` script stores each
learned limit in the pool's ``learned`` hash and applies it to the key's (or its quota
group's) limits at once, for every process sharing the store; the ``register`` script
applies the records that have not expired over the file's limits. What a fact changes:

- a 429 naming a per-key quota: that limit of the key, lowered to the quota's value;
- a 429 naming a per-project quota: the limit of the key's quota group; a key in no
  group (whose project the pool does not know) joins the pool's learned group
  (``@~project``), whose limit that is: the keys that met a per-project quota are
  counted together, so three keys of one project keep its quota after one 429 each
  (keys of separate projects that each met one are counted together too: safe, but
  below their capacity, until the learned limits expire; name them in
  ``quota_groups`` to avoid it);
- an ``x-ratelimit-limit-*`` header: adopted for the key's group (OpenAI counts per
  project), else the key; never above the file's value unless ``learn_raise``;
- ``x-ratelimit-remaining-*`` below what the pool holds: the difference held as reserved
  until the provider's reset.

Learned limits expire after ``learn_ttl_seconds`` (each answer that states one again
renews it) and are forgotten by :meth:`LearnOps.forget_learned` (``reload_keys``).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rotating_llm.learning import MAX_RESET_S, ProviderFacts
from rotating_llm.limiter import _schema as schema
from rotating_llm.limiter._group_ops import _group_limits, group_name

if TYPE_CHECKING:
    from rotating_llm.config import Settings
    from rotating_llm.keys.models import APIKey, QuotaGroup
    from rotating_llm.storage import FailoverStore, Store

__all__ = ["LearnOps", "LearnedRecord"]

_US = 1_000_000
_SOURCE = re.compile(r"[^A-Za-z0-9 _.:@-]")
_SOURCE_MAX = 120


@dataclass(frozen=True)
class LearnedRecord:
    """One limit learned from the provider, as the store holds it.

    Attributes:
        value: The learned value.
        learned_at: When (seconds since the epoch, Redis's clock).
        expires_in: Seconds until it no longer applies.
        may_raise: Whether it may exceed the file's value.
        source: The answer that said so (a quota id or a header name).
        group: For a key put into the pool's learned group (kind ``grp``): its name.
    """

    value: int
    learned_at: float
    expires_in: float
    may_raise: bool
    source: str
    group: str | None = None

    def applies_over(self, configured: int | None) -> bool:
        """Whether this record, not ``configured`` (the file's; None: none), is in force."""
        return self.may_raise or not configured or self.value < configured


def _clean(source: str) -> str:
    return _SOURCE.sub("", source)[:_SOURCE_MAX] or "provider"


class LearnOps:
    """The limiter's learned-limits part (uses the limiter's key and group tables)."""

    _keys: dict[str, APIKey]
    _groups: dict[str, QuotaGroup]
    store: FailoverStore
    settings: Settings
    _lock: threading.Lock
    _registered: dict[int, tuple[int, set[str]]]
    #: ``time.monotonic()`` at which a learned limit this process knows of expires.
    _learn_due: float = math.inf

    # provided by RedisLimiter
    def _head(self, store: Store, pool: str) -> list[Any]:  # pragma: no cover
        raise NotImplementedError

    def _ensure(self, store: Store, pool: str) -> None:  # pragma: no cover
        raise NotImplementedError

    async def _aensure(self, store: Store, pool: str) -> None:  # pragma: no cover
        raise NotImplementedError

    def _limits_arg(self, key: APIKey) -> str:  # pragma: no cover
        raise NotImplementedError

    def _group_of(self, key: APIKey) -> QuotaGroup | None:  # pragma: no cover
        raise NotImplementedError

    # -- expiry -----------------------------------------------------------------------

    def _note_expiry(self, in_us: Any) -> None:
        """Remember when the first learned limit a reply names expires."""
        us = int(in_us)
        if us >= 0:
            due = time.monotonic() + us / _US + 0.01
            if due < self._learn_due:
                self._learn_due = due

    def _expire_due(self) -> None:
        """Once a learned limit this process knows of expired: register every pool
        again (which drops it everywhere)."""
        if self._learn_due < math.inf and time.monotonic() >= self._learn_due:
            with self._lock:
                self._learn_due = math.inf
                self._registered.clear()

    def _register_reply(self, raw: Any) -> None:
        if isinstance(raw, (list, tuple)) and len(raw) > 1:
            self._note_expiry(raw[1])

    # -- learning ---------------------------------------------------------------------

    def _learn_calls(self, key_id: str, facts: ProviderFacts) -> list[tuple[str, str, list[Any]]]:
        """``(target, file limits, tail)`` of each learn call ``facts`` need."""
        key = self._keys.get(key_id)
        if key is None or not facts:
            return []
        group = self._group_of(key)
        tails: dict[str, list[Any]] = {}
        files = {key_id: self._limits_arg(key)}
        shared = key_id
        if group is not None:
            shared = group_name(group.group_id)
            files[shared] = _group_limits(group)
        adopt = "raise" if self.settings.learn_raise else "adopt"
        for lim in facts.limits:
            if lim.refused and lim.scope == "key":
                target, how = key_id, "lower"
            elif lim.refused:
                target, how = shared, "lower" if group is not None else "share"
            else:
                target, how = shared, adopt
            tails.setdefault(target, []).extend([lim.kind, how, lim.value, _clean(lim.source)])
        for rem in facts.remaining:
            if rem.kind in ("rpm", "tpm") and rem.used > 0:
                reset_us = int(min(rem.reset, MAX_RESET_S) * _US)
                tails.setdefault(shared, []).extend([rem.kind, "used", rem.used, reset_us])
        return [(t, files[t], tail) for t, tail in tails.items()]

    def _learn_args(
        self, store: Store, pool: str, target: str, file: str, tail: Sequence[Any]
    ) -> list[Any]:
        ttl_us = int(self.settings.learn_ttl_seconds * _US)
        return [*self._head(store, pool), "learn", target, file, ttl_us, *tail]

    def learn(self, key_id: str, facts: ProviderFacts) -> None:
        """Apply what a provider's answer on ``key_id`` said about its limits."""
        calls = self._learn_calls(key_id, facts)
        if not calls:
            return
        pool = self._keys[key_id].model_name

        def op(store: Store) -> None:
            self._ensure(store, pool)
            for target, file, tail in calls:
                args = self._learn_args(store, pool, target, file, tail)
                self._note_expiry(store.call("learn", store.pool_keys(pool), args))

        self.store.run("learn", op)

    async def alearn(self, key_id: str, facts: ProviderFacts) -> None:
        """Async twin of :meth:`learn`."""
        calls = self._learn_calls(key_id, facts)
        if not calls:
            return
        pool = self._keys[key_id].model_name

        async def op(store: Store) -> None:
            await self._aensure(store, pool)
            for target, file, tail in calls:
                args = self._learn_args(store, pool, target, file, tail)
                self._note_expiry(await store.acall("learn", store.pool_keys(pool), args))

        await self.store.arun("learn", op)

    def forget_learned(self) -> None:
        """Drop every learned limit of every pool (the next registration applies the
        file's limits again)."""
        pools = sorted({k.model_name for k in self._keys.values()})
        for pool in pools:

            def op(store: Store, pool: str = pool) -> None:
                args = [*self._head(store, pool), "forget", "", "", 0]
                store.call("learn", store.pool_keys(pool), args)

            self.store.run("forget learned", op)
        with self._lock:
            self._learn_due = math.inf
            self._registered.clear()

    def learned(self, pool: str) -> dict[str, dict[str, LearnedRecord]]:
        """Learned limits of ``pool`` in force: ``{key id or @group: {kind: record}}``."""

        def op(store: Store) -> list[Any]:
            args = [*self._head(store, pool), "read", "", "", 0]
            return list(store.call("learn", store.pool_keys(pool), args))

        raw = self.store.run("read learned", op)
        if not raw:
            return {}
        now_us = int(raw[0])
        out: dict[str, dict[str, LearnedRecord]] = {}
        for i in range(1, len(raw) - 1, 2):
            kind, _, target = str(raw[i]).partition(":")
            parts = str(raw[i + 1]).split(" ", len(schema.LEARNED) - 1)
            known = kind in schema.LEARN_KINDS or kind == schema.LEARNED_GROUP_KIND
            if not known or len(parts) != len(schema.LEARNED):
                continue
            f = dict(zip(schema.LEARNED, parts, strict=True))
            left = (int(f["expires_us"]) - now_us) / _US
            if left <= 0:
                continue
            grp = kind == schema.LEARNED_GROUP_KIND
            out.setdefault(target, {})[kind] = LearnedRecord(
                0 if grp else int(f["value"]),
                int(f["at_us"]) / _US,
                left,
                f["flag"] == "r",
                f["source"],
                f["value"] if grp else None,
            )
        return out
