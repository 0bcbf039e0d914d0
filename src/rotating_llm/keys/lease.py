"""``Lease``: one admitted request on one key, settled exactly once."""

from __future__ import annotations

import logging
from types import TracebackType
from typing import TYPE_CHECKING

from pydantic import SecretStr

from rotating_llm._bounds import lease_failure, lease_tokens
from rotating_llm.errors import StoreError
from rotating_llm.events import emit
from rotating_llm.failures import FailureKind

if TYPE_CHECKING:
    from rotating_llm.keys._leasing import Leasing
    from rotating_llm.keys.models import APIKey
    from rotating_llm.learning import ProviderFacts
    from rotating_llm.limiter import Reservation

__all__ = ["FailureKind", "Lease"]

logger = logging.getLogger("rotating_llm.lease")


class Lease:
    """The right to send one request with one key, granted by :meth:`KeyManager.acquire`.

    Settle it once: :meth:`complete` with the real token usage, :meth:`fail` with what the
    provider answered, or :meth:`release` if the request never reached the provider. As a
    context manager, a block that ends normally completes with the estimate unless settled,
    and a block that raises fails it as a model-side error (the reservation is kept).
    """

    def __init__(
        self,
        manager: Leasing,
        key: APIKey,
        secret: SecretStr,
        reservation: Reservation | None,
        estimated_tokens: int,
        waited: float = 0.0,
    ) -> None:
        self._manager = manager
        self.key = key
        self._secret = secret
        self.reservation = reservation
        self.estimated_tokens = estimated_tokens
        #: Seconds spent waiting for capacity before this lease was granted.
        self.waited = waited
        #: ``None`` until settled, then ``"complete"``, ``"release"`` or ``"fail:<kind>"``.
        self.outcome: str | None = None

    @property
    def key_id(self) -> str:
        """Id of the leased key."""
        return self.key.key_id

    @property
    def affinity_held(self) -> bool | None:
        """Whether the key that last served the acquire's ``affinity`` was chosen (``None``:
        no affinity was asked, or no reservation was made)."""
        return None if self.reservation is None else self.reservation.affinity_held

    @property
    def model_name(self) -> str:
        """Model (pool) of the leased key."""
        return self.key.model_name

    @property
    def provider(self) -> str:
        """Provider of the leased key."""
        return self.key.provider

    @property
    def base_url(self) -> str | None:
        """Endpoint the request must go to, if the key names one."""
        return self.key.base_url

    @property
    def api_key(self) -> SecretStr:
        """The resolved secret; ``api_key.get_secret_value()`` where the client needs the
        string. Never log that value."""
        return self._secret

    @property
    def settled(self) -> bool:
        """True once completed, failed or released."""
        return self.outcome is not None

    @property
    def reserved(self) -> bool:
        """False for a fail-open lease (store unavailable, ``allow`` mode): nothing to settle."""
        return self.reservation is not None

    def __repr__(self) -> str:
        state = self.outcome or "open"
        return (
            f"Lease(key_id={self.key_id!r}, model_name={self.model_name!r}, "
            f"estimated_tokens={self.estimated_tokens}, state={state!r}, "
            "api_key=SecretStr('**********'))"
        )

    def _begin(self, outcome: str, tokens: int | None = None) -> bool:
        if self.outcome is not None:
            logger.debug(
                "lease on %s already settled (%s); %s ignored", self.key_id, self.outcome, outcome
            )
            return False
        self.outcome = outcome
        group = {"quota_group": self.key.quota_group} if self.key.quota_group else {}
        emit(
            "lease.settled",
            model=self.model_name,
            key_id=self.key_id,
            outcome=outcome,
            tokens=self.estimated_tokens if tokens is None else tokens,
            **group,
        )
        return True

    def complete(
        self, actual_tokens: int | None = None, *, facts: ProviderFacts | None = None
    ) -> None:
        """Settle with the real token usage (default: keep the estimate).

        On a Redis server this returns without waiting for Redis's reply (see
        ``rotating_llm.limiter._settler``); this process's reads of usage and its
        refusals wait for the outstanding replies first. ``facts``: what the answer said
        about the key's limits (``rotating_llm.learning.parse_answer`` of its headers),
        applied with :meth:`KeyManager.learn`.
        """
        tokens = lease_tokens(actual_tokens, self.estimated_tokens)
        if self._begin("complete", tokens) and self.reservation is not None:
            self._complete(tokens)
        if facts and self.reservation is not None:
            self._manager.learn(self.key_id, facts)

    async def acomplete(
        self, actual_tokens: int | None = None, *, facts: ProviderFacts | None = None
    ) -> None:
        """Async twin of :meth:`complete`."""
        tokens = lease_tokens(actual_tokens, self.estimated_tokens)
        if (
            self._begin("complete", tokens)
            and self.reservation is not None
            and not await self._manager.limiter.acomplete_later(self.reservation, tokens)
        ):
            await self._asettle("complete", tokens)
        if facts and self.reservation is not None:
            await self._manager.alearn(self.key_id, facts)

    def release(self) -> None:
        """Settle a request that never reached the provider: it no longer counts."""
        if self._begin("release", 0) and self.reservation is not None:
            self._settle("release", 0)

    async def arelease(self) -> None:
        """Async twin of :meth:`release`."""
        if self._begin("release", 0) and self.reservation is not None:
            await self._asettle("release", 0)

    def fail(
        self,
        kind: FailureKind | str,
        retry_after: float | None = None,
        reason: str | None = None,
        actual_tokens: int | None = None,
        *,
        facts: ProviderFacts | None = None,
    ) -> str:
        """Settle after the provider refused or failed, and act on the key (docs/design.md).

        Args:
            kind: A :class:`FailureKind` (or its value).
            retry_after: The provider's retry delay in seconds, if it gave one.
            reason: Short text stored with a cooldown or disable (never a secret).
            actual_tokens: Tokens the provider reported, if any.
            facts: What the answer said about the key's limits (``Classified.facts``
                of :func:`rotating_llm.failures.classify_http`).

        Returns:
            What was done to the key: ``"cooldown"``, ``"disabled"``,
            ``"secret_rotated"`` (the store had a new secret: retry) or ``"none"``.
        """
        fk = FailureKind(kind)
        retry_after, actual_tokens = lease_failure(retry_after, actual_tokens)
        if not self._begin(f"fail:{fk.value}", actual_tokens):
            return "none"
        return self._manager._on_failure(self, fk, retry_after, reason, actual_tokens, facts)

    async def afail(
        self,
        kind: FailureKind | str,
        retry_after: float | None = None,
        reason: str | None = None,
        actual_tokens: int | None = None,
        *,
        facts: ProviderFacts | None = None,
    ) -> str:
        """Async twin of :meth:`fail`."""
        fk = FailureKind(kind)
        retry_after, actual_tokens = lease_failure(retry_after, actual_tokens)
        if not self._begin(f"fail:{fk.value}", actual_tokens):
            return "none"
        return await self._manager._aon_failure(self, fk, retry_after, reason, actual_tokens, facts)

    def _complete(self, tokens: int) -> None:
        assert self.reservation is not None
        if not self._manager.limiter.complete_later(self.reservation, tokens):
            self._settle("complete", tokens)

    def _settle(self, action: str, tokens: int) -> None:
        assert self.reservation is not None
        try:
            outcome = "served" if action == "complete" else ""
            self._manager.limiter.settle(self.reservation, action, tokens, outcome)
        except StoreError as exc:  # the reservation ages out of the window by itself
            logger.warning("could not %s the lease on %s: %s", action, self.key_id, exc)

    async def _asettle(self, action: str, tokens: int) -> None:
        assert self.reservation is not None
        try:
            outcome = "served" if action == "complete" else ""
            await self._manager.limiter.asettle(self.reservation, action, tokens, outcome)
        except StoreError as exc:
            logger.warning("could not %s the lease on %s: %s", action, self.key_id, exc)

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.settled:
            return
        if exc_type is None:
            self.complete()
        else:
            self.fail(FailureKind.SERVER, reason=f"unhandled {exc_type.__name__}")

    async def __aenter__(self) -> Lease:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.settled:
            return
        if exc_type is None:
            await self.acomplete()
        else:
            await self.afail(FailureKind.SERVER, reason=f"unhandled {exc_type.__name__}")
