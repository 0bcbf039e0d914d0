"""What a provider's answer and failure do to a key: learned limits and the failure table.

Mixed into :class:`~rotating_llm.keys.manager.KeyManager` (through ``Leasing``, whose
I/O tables drive these flows); kept apart so each module stays small.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from rotating_llm.errors import SecretStoreError, StoreError
from rotating_llm.events import emit
from rotating_llm.keys._flow import Flow, Step, adrive, drive
from rotating_llm.keys.lease import FailureKind

if TYPE_CHECKING:
    from rotating_llm.keys.lease import Lease
    from rotating_llm.keys.models import APIKey
    from rotating_llm.learning import ProviderFacts
    from rotating_llm.limiter import RedisLimiter

__all__ = ["Failing"]

logger = logging.getLogger("rotating_llm.keys")


class Failing:
    """``learn``/``alearn`` and the failure handling of a key manager."""

    limiter: RedisLimiter
    _keys: dict[str, APIKey]

    def _sync_io(self, step: Step) -> Any:  # pragma: no cover - provided by Leasing
        raise NotImplementedError

    async def _async_io(self, step: Step) -> Any:  # pragma: no cover - provided by Leasing
        raise NotImplementedError

    # -- learned limits -------------------------------------------------------------

    def learn(self, key_id: str, facts: ProviderFacts) -> None:
        """Apply what a provider's answer on ``key_id`` said about its limits, for every
        process sharing the store (the one entry point of every face: ``Lease.complete``
        and ``Lease.fail`` call it with their ``facts``). A store error is logged."""
        if not facts or key_id not in self._keys:
            return
        try:
            self.limiter.learn(key_id, facts)
        except StoreError as exc:
            logger.warning("could not record the limits learned on %s: %s", key_id, exc)

    async def alearn(self, key_id: str, facts: ProviderFacts) -> None:
        """Async twin of :meth:`learn`."""
        if not facts or key_id not in self._keys:
            return
        try:
            await self.limiter.alearn(key_id, facts)
        except StoreError as exc:
            logger.warning("could not record the limits learned on %s: %s", key_id, exc)

    # -- failures ---------------------------------------------------------------------

    def _failure_flow(
        self,
        lease: Lease,
        kind: FailureKind,
        retry_after: float | None,
        reason: str | None,
        actual: int | None,
        facts: ProviderFacts | None = None,
    ) -> Flow[str]:
        """What a provider's failure does to the key (the failure table), without I/O."""
        res, kid = lease.reservation, lease.key_id
        tokens = lease.estimated_tokens if actual is None else actual
        try:
            if kind is FailureKind.AUTH:
                if res is not None:
                    yield Step("settle", res, "release", 0)
                try:  # re-read the secret once: a changed one means it was rotated
                    fresh = yield Step("fresh_secret", kid)
                except SecretStoreError:
                    fresh = None
                if (
                    fresh is not None
                    and fresh.get_secret_value() != lease.api_key.get_secret_value()
                ):
                    return "secret_rotated"
                why = reason or "authentication failed"
                yield Step("health", kid, "disable", 0.0, why)
                emit("key.disabled", model=lease.model_name, key_id=kid, reason=why)
                return "disabled"
            if res is not None:
                limited = kind in (FailureKind.RATE_LIMIT, FailureKind.DAILY_QUOTA)
                spent = (actual or 0) if limited else tokens
                yield Step("settle", res, "complete", spent, "rate_limited" if limited else "")
            if facts:  # after the settlement: the refused request still counts
                yield Step("learn", kid, facts)
            if kind is FailureKind.RATE_LIMIT:
                why = reason or "rate limited (429)"
                secs = yield Step("health", kid, "cooldown", retry_after or 0.0, why)
                emit("key.cooldown", model=lease.model_name, key_id=kid, seconds=secs, reason=why)
                return "cooldown"
            if kind is FailureKind.DAILY_QUOTA:
                why = reason or "daily quota exhausted"
                secs = yield Step("health", kid, "daily", 0.0, why)
                emit("key.cooldown", model=lease.model_name, key_id=kid, seconds=secs, reason=why)
                return "cooldown"
        except StoreError as exc:
            logger.warning("could not record %s on %s: %s", kind.value, kid, exc)
        return "none"

    def _on_failure(
        self,
        lease: Lease,
        kind: FailureKind,
        retry_after: float | None,
        reason: str | None,
        actual: int | None,
        facts: ProviderFacts | None = None,
    ) -> str:
        flow = self._failure_flow(lease, kind, retry_after, reason, actual, facts)
        return drive(flow, self._sync_io)

    async def _aon_failure(
        self,
        lease: Lease,
        kind: FailureKind,
        retry_after: float | None,
        reason: str | None,
        actual: int | None,
        facts: ProviderFacts | None = None,
    ) -> str:
        flow = self._failure_flow(lease, kind, retry_after, reason, actual, facts)
        return await adrive(flow, self._async_io)
