"""``LeaseSettler``: LiteLLM's callback that settles each attempt's lease.

A failed attempt's exception is scrubbed of the key it was sent with before LiteLLM
raises it (its failure callbacks run first, sync and async): the SDK error it chains
keeps the request, whose headers hold the key (``Authorization: Bearer ...``,
``x-goog-api-key``). Only attempts the face routed (they carry its lease) are touched.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import litellm
from litellm.integrations.custom_logger import CustomLogger

from rotating_llm._scrub import scrub_exception
from rotating_llm.failures import Classified, FailureKind
from rotating_llm.learning import NO_FACTS, ProviderFacts, parse_headers
from rotating_llm.litellm._book import TOKEN_FIELD, LeaseBook, metadata_of
from rotating_llm.litellm._failures import classify, usage_tokens
from rotating_llm.litellm._keys import PLACEHOLDER_SECRET, key_id_for

if TYPE_CHECKING:
    from rotating_llm.keys.lease import Lease

__all__ = ["LeaseSettler"]

logger = logging.getLogger("rotating_llm.litellm")

_CALLBACK_LISTS = (
    "callbacks",
    "success_callback",
    "failure_callback",
    "_async_success_callback",
    "_async_failure_callback",
)


def _deployment_of(kwargs: Mapping[str, Any], metadata: Mapping[str, Any]) -> str | None:
    info = metadata.get("model_info")
    if isinstance(info, Mapping) and info.get("id") is not None:
        return str(info["id"])
    for source in (kwargs, kwargs.get("standard_logging_object")):
        if isinstance(source, Mapping) and source.get("model_id") is not None:
            return str(source["model_id"])
    return None


#: shorter values are not taken for keys (an empty or dummy ``api_key``)
_MIN_SECRET = 8


def _call_secrets(kwargs: Mapping[str, Any]) -> list[str]:
    """The key(s) an attempt was sent with, as LiteLLM's callback arguments give them."""
    params = kwargs.get("litellm_params")
    found = [kwargs.get("api_key"), params.get("api_key") if isinstance(params, Mapping) else None]
    return [
        s
        for s in dict.fromkeys(found)
        if isinstance(s, str) and len(s) >= _MIN_SECRET and s != PLACEHOLDER_SECRET
    ]


def _scrub(kwargs: Mapping[str, Any], exc: BaseException) -> None:
    """Remove the attempt's key from everything reachable from ``exc`` (in place)."""
    try:
        scrub_exception(exc, _call_secrets(kwargs))
    except Exception as err:  # never fail the settlement for it
        logger.warning("could not scrub a failed attempt's error: %s", type(err).__name__)


def _classified(kwargs: Mapping[str, Any], exc: BaseException) -> Classified:
    """The failure ``exc`` stands for; its key is scrubbed even if classifying raises (the
    attempt then counts as a server error)."""
    try:
        return classify(exc)
    except Exception as err:
        logger.warning("could not classify a failed attempt's error: %s", type(err).__name__)
        return Classified(FailureKind.SERVER, None, type(exc).__name__)
    finally:
        _scrub(kwargs, exc)


class LeaseSettler(CustomLogger):
    """Settles the lease of every attempt the strategy admitted, from LiteLLM's callbacks.

    Success: the real token usage (``usage.total_tokens``, or ``prompt_tokens`` with
    ``tpm_counts="input"``). Failure: the failure table of docs/design.md (429: cooldown
    for the provider's delay; per-day quota: until the daily reset; 401/403: key
    disabled; 5xx, timeouts and 400s: key not blamed). Events of requests this router's
    strategy did not admit are ignored. Never raises into LiteLLM.

    Args:
        book: The strategy's open leases.
        tpm_counts: ``"total"`` (prompt + completion, default) or ``"input"`` tokens.
    """

    def __init__(self, book: LeaseBook, tpm_counts: Literal["total", "input"] = "total") -> None:
        super().__init__()
        self.book = book
        self.tpm_counts: Literal["total", "input"] = tpm_counts
        #: Settled attempts by outcome (``complete``, ``fail:<kind>``).
        self.settled: dict[str, int] = {}
        self._in_flight = 0
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        """Leases booked or being settled right now."""
        return len(self.book) + self._in_flight

    def __repr__(self) -> str:
        return f"LeaseSettler(open_leases={len(self.book)}, settled={self.settled})"

    def register(self) -> None:
        """Add this callback to ``litellm.callbacks`` (once)."""
        manager = getattr(litellm, "logging_callback_manager", None)
        if manager is not None and hasattr(manager, "add_litellm_callback"):
            manager.add_litellm_callback(self)
        elif self not in litellm.callbacks:
            litellm.callbacks.append(self)

    def unregister(self) -> None:
        """Remove this callback from every LiteLLM callback list."""
        for name in _CALLBACK_LISTS:
            found = getattr(litellm, name, None)
            if isinstance(found, list):
                while self in found:
                    found.remove(self)

    def _take(self, kwargs: Any) -> Lease | None:
        if not isinstance(kwargs, Mapping):
            return None
        metadata = metadata_of(kwargs)
        token = metadata.get(TOKEN_FIELD)
        if not isinstance(token, str):
            return None
        dep = _deployment_of(kwargs, metadata)
        with self._lock:
            lease = self.book.take(token, key_id_for(dep) if dep is not None else None)
            if lease is not None:
                self._in_flight += 1
        return lease

    def _count(self, outcome: str | None) -> None:
        with self._lock:
            self._in_flight -= 1
            if outcome is not None:
                self.settled[outcome] = self.settled.get(outcome, 0) + 1

    def _tokens(self, kwargs: Mapping[str, Any], response_obj: Any) -> int | None:
        for candidate in (
            response_obj,
            kwargs.get("complete_streaming_response"),
            kwargs.get("async_complete_streaming_response"),
        ):
            tokens = usage_tokens(candidate, self.tpm_counts) if candidate is not None else None
            if tokens is not None:
                return tokens
        return None

    @staticmethod
    def _facts(kwargs: Mapping[str, Any], response_obj: Any) -> ProviderFacts:
        """The ``x-ratelimit-*`` headers LiteLLM keeps of a response (``_hidden_params``'
        ``additional_headers``, ``llm_provider-`` prefixed), parsed."""
        for candidate in (
            response_obj,
            kwargs.get("complete_streaming_response"),
            kwargs.get("async_complete_streaming_response"),
        ):
            hidden = getattr(candidate, "_hidden_params", None)
            headers = hidden.get("additional_headers") if isinstance(hidden, Mapping) else None
            if isinstance(headers, Mapping) and headers:
                return parse_headers(headers)
        return NO_FACTS

    @staticmethod
    def _exception(kwargs: Mapping[str, Any], response_obj: Any) -> BaseException:
        exc = kwargs.get("exception")
        if isinstance(exc, BaseException):
            return exc
        if isinstance(response_obj, BaseException):
            return response_obj
        return RuntimeError("unknown failure")

    def log_success_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """Complete the attempt's lease with the response's token usage."""
        lease = self._take(kwargs)
        if lease is None:
            return
        outcome: str | None = None
        try:
            lease.complete(
                self._tokens(kwargs, response_obj), facts=self._facts(kwargs, response_obj)
            )
            outcome = "complete"
        except Exception as exc:
            logger.warning("could not settle a lease on success: %s", type(exc).__name__)
        finally:
            self._count(outcome)

    def log_failure_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """Fail the attempt's lease as the failure table says."""
        lease = self._take(kwargs)
        if lease is None:
            return
        outcome: str | None = None
        try:
            exc = self._exception(kwargs, response_obj)
            failure = _classified(kwargs, exc)
            kind = failure.kind or FailureKind.SERVER
            lease.fail(kind, failure.retry_after, failure.reason, facts=failure.facts)
            outcome = f"fail:{kind.value}"
        except Exception as exc:
            logger.warning("could not settle a lease on failure: %s", type(exc).__name__)
        finally:
            self._count(outcome)

    async def async_log_success_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """Async twin of :meth:`log_success_event`."""
        lease = self._take(kwargs)
        if lease is None:
            return
        outcome: str | None = None
        try:
            await lease.acomplete(
                self._tokens(kwargs, response_obj), facts=self._facts(kwargs, response_obj)
            )
            outcome = "complete"
        except Exception as exc:
            logger.warning("could not settle a lease on success: %s", type(exc).__name__)
        finally:
            self._count(outcome)

    async def async_log_failure_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """Async twin of :meth:`log_failure_event`."""
        lease = self._take(kwargs)
        if lease is None:
            return
        outcome: str | None = None
        try:
            exc = self._exception(kwargs, response_obj)
            failure = _classified(kwargs, exc)
            kind = failure.kind or FailureKind.SERVER
            await lease.afail(kind, failure.retry_after, failure.reason, facts=failure.facts)
            outcome = f"fail:{kind.value}"
        except Exception as exc:
            logger.warning("could not settle a lease on failure: %s", type(exc).__name__)
        finally:
            self._count(outcome)
