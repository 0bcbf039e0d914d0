"""``RotatingStrategy``: LiteLLM's custom routing strategy backed by the shared limiter."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

from litellm.types.router import CustomRoutingStrategyBase

from rotating_llm.errors import AllKeysExhaustedError, RequestTooLargeError
from rotating_llm.keys.manager import KeyManager
from rotating_llm.keys.models import APIKey
from rotating_llm.litellm._book import LeaseBook, stamp
from rotating_llm.litellm._errors import PoolExhaustedError, PoolRequestTooLargeError
from rotating_llm.litellm._keys import deployment_id, deployment_key, estimate_tokens, key_id_for
from rotating_llm.litellm._who import who
from rotating_llm.tokens import aprepare

__all__ = ["Deployment", "Estimator", "RotatingStrategy", "group_keys", "router_deployments"]

logger = logging.getLogger("rotating_llm.litellm")

#: A deployment as LiteLLM's registry lists it (``model_name``, ``litellm_params``, ``model_info``).
Deployment = Mapping[str, Any]
#: ``(messages, input, request_kwargs) -> estimated tokens``.
Estimator = Callable[[Sequence[Any] | None, Any, Mapping[str, Any] | None], int]


def router_deployments(router: Any, model: str | None) -> list[Deployment]:
    registry = getattr(router, "registry", None)
    if callable(registry):  # litellm >= 1.110: the registry entry point
        found = registry().deployments(model, source="group")
    else:  # older routers
        found = router.get_model_list(model_name=model)
    return [d for d in (found or []) if isinstance(d, Mapping)]


_LIMIT_FIELDS = ("rpm", "tpm", "rpd", "weight", "model", "custom_llm_provider")


def _signature(deployments: Sequence[Deployment]) -> tuple[object, ...]:
    """What a group's keys are built from, cheaply: ids, limit fields and providers."""
    parts = []
    for dep in deployments:
        params = dep.get("litellm_params") or {}
        info = dep.get("model_info") or {}
        parts.append(
            (
                repr(info.get("id")),
                tuple(repr(params.get(f)) for f in _LIMIT_FIELDS),
                tuple(repr(info.get(f)) for f in _LIMIT_FIELDS[:3]),
                tuple(repr(dep.get(f)) for f in _LIMIT_FIELDS[:3]),
            )
        )
    return tuple(sorted(parts))


def group_keys(
    pool: str, deployments: Sequence[Deployment], file_keys: Mapping[str, APIKey] | None = None
) -> tuple[APIKey, ...]:
    """The ``APIKey`` of every deployment of ``pool`` (the first of duplicated ids)."""
    keys: dict[str, APIKey] = {}
    for dep in deployments:
        key = deployment_key(dep, pool, file_keys)
        keys.setdefault(key.key_id, key)
    return tuple(sorted(keys.values(), key=lambda k: k.key_id))


class RotatingStrategy(CustomRoutingStrategyBase):
    """Picks a deployment of a model group with one atomic select-and-reserve in Redis.

    Each deployment is a key of the pool named after its model group (key id: the
    deployment id). Every process with the same Redis and ``key_prefix`` shares the
    limits exactly. The lease is booked under a token written into the request's
    metadata; :class:`~rotating_llm.litellm.LeaseSettler` settles it from LiteLLM's
    success and failure callbacks. Deployments LiteLLM has cooled down are skipped.

    Args:
        router: The ``litellm.Router`` whose deployments are picked.
        manager: The core's key manager (its keys are kept in step with the router).
        book: Where open leases wait for their callback.
        max_wait: Seconds to wait for capacity (``None``: the manager's setting).
        estimator: Token estimate of a request (default :func:`estimate_tokens`).
        keys_file_keys: Keys-file entries by key id, overriding deployments' limits.
        respect_litellm_cooldowns: Skip deployments in LiteLLM's own cooldown.
    """

    def __init__(
        self,
        router: Any,
        manager: KeyManager,
        book: LeaseBook,
        *,
        max_wait: float | None = None,
        estimator: Estimator | None = None,
        keys_file_keys: Mapping[str, APIKey] | None = None,
        respect_litellm_cooldowns: bool = True,
    ) -> None:
        self.router = router
        self.manager = manager
        self.book = book
        self.max_wait = max_wait
        self.estimator: Estimator = estimator or estimate_tokens
        self.keys_file_keys = dict(keys_file_keys or {})
        self.respect_litellm_cooldowns = respect_litellm_cooldowns
        self._lock = threading.Lock()
        self._signatures: dict[str, tuple[object, ...]] = {}

    def __repr__(self) -> str:
        return f"RotatingStrategy(manager={self.manager!r}, open_leases={len(self.book)})"

    # -- deployments as keys ------------------------------------------------------------

    def sync(self, pool: str, deployments: Sequence[Deployment]) -> None:
        """Bring the manager's keys of ``pool`` in step with the router's deployments.

        A cheap signature of the deployments is compared first: picks on an unchanged
        group build no keys and touch no store.
        """
        signature = _signature(deployments)
        if self._signatures.get(pool) == signature:
            return
        keys = group_keys(pool, deployments, self.keys_file_keys)
        with self._lock:
            if self._signatures.get(pool) == signature:
                return
            wanted = {k.key_id: k for k in keys}
            for old in self.manager.keys:
                if old.model_name == pool and wanted.get(old.key_id) != old:
                    self.manager.remove_key(old.key_id)
            known = {k.key_id for k in self.manager.keys}
            for key in keys:
                if key.key_id not in known:
                    self.manager.add_key(key)
            self._signatures[pool] = signature

    def prime(self, pools: Mapping[str, Sequence[Deployment]]) -> None:
        """Record ``pools`` as in step (their keys were given to the manager up front)."""
        with self._lock:
            for pool, deployments in pools.items():
                self._signatures[pool] = _signature(deployments)

    def _candidates(
        self, model: str, specific_deployment: bool | None
    ) -> tuple[str, dict[str, Deployment], list[str]]:
        """The pool, its deployments by key id, and the key ids a specific request excludes."""
        group = router_deployments(self.router, model)
        if specific_deployment or not group:
            everyone = router_deployments(self.router, None)
            chosen = [
                d
                for d in everyone
                if model in (deployment_id(d), (d.get("litellm_params") or {}).get("model"))
            ]
            if chosen:
                pool = str(chosen[0].get("model_name"))
                group = [d for d in everyone if d.get("model_name") == pool]
                keep = {key_id_for(deployment_id(d)) for d in chosen}
                self.sync(pool, group)
                by_key = {key_id_for(deployment_id(d)): d for d in group}
                return pool, by_key, [k for k in by_key if k not in keep]
        if not group:
            raise ValueError(f"no deployments for model {model!r} in this router")
        names = {str(d.get("model_name")) for d in group}
        pool = model if model in names else str(group[0].get("model_name"))
        group = [d for d in group if d.get("model_name") == pool]
        self.sync(pool, group)
        return pool, {key_id_for(deployment_id(d)): d for d in group}, []

    # -- LiteLLM's cooldowns ----------------------------------------------------------------

    def _cooldowns(self) -> Any:
        health = getattr(self.router, "health", None)
        return health().cooldowns if callable(health) else None

    def _cooled(self, by_key: Mapping[str, Deployment]) -> list[str]:
        if not self.respect_litellm_cooldowns:
            return []
        ids = {deployment_id(d): k for k, d in by_key.items()}
        try:
            store = self._cooldowns()
            active = store.get_active_cooldowns(list(ids), None) if store is not None else []
        except Exception as exc:  # an optimisation: never a reason to fail the pick
            logger.debug("LiteLLM cooldowns unreadable: %s", type(exc).__name__)
            return []
        return [ids[str(item[0])] for item in active or () if str(item[0]) in ids]

    async def _acooled(self, by_key: Mapping[str, Deployment]) -> list[str]:
        if not self.respect_litellm_cooldowns:
            return []
        ids = {deployment_id(d): k for k, d in by_key.items()}
        try:
            store = self._cooldowns()
            active = await store.async_get_active_cooldowns(list(ids), None) if store else []
        except Exception as exc:
            logger.debug("LiteLLM cooldowns unreadable: %s", type(exc).__name__)
            return []
        return [ids[str(item[0])] for item in active or () if str(item[0]) in ids]

    # -- the picks ---------------------------------------------------------------------------

    def _estimate(self, messages: Any, input: Any, request_kwargs: Mapping[str, Any] | None) -> int:
        return int(self.estimator(messages, input, request_kwargs))

    def _book(
        self, lease: Any, by_key: Mapping[str, Deployment], request_kwargs: Any
    ) -> Deployment:
        kwargs = request_kwargs if isinstance(request_kwargs, MutableMapping) else None
        self.book.add(stamp(kwargs), lease)
        return by_key[lease.key_id]

    def get_available_deployment(  # type: ignore[override]  # the base is annotated -> None
        self,
        model: str,
        messages: list[dict[str, str]] | None = None,
        input: str | list[object] | None = None,
        specific_deployment: bool | None = False,
        request_kwargs: dict[str, object] | None = None,
    ) -> Deployment:
        """Reserve on a deployment of ``model`` and return it (LiteLLM's sync pick).

        Raises:
            PoolExhaustedError: No deployment has room within ``max_wait``.
            PoolRequestTooLargeError: The request exceeds every deployment's TPM.
        """
        pool, by_key, exclude = self._candidates(model, specific_deployment)
        est = self._estimate(messages, input, request_kwargs)
        exclude = exclude + self._cooled(by_key)
        w = who(request_kwargs, self.manager.settings.sticky_keys)
        try:
            lease = self.manager.acquire(
                pool, est, self.max_wait, exclude=exclude,
                affinity=w.affinity, priority=w.priority, tenant=w.tenant,
            )  # fmt: skip
        except AllKeysExhaustedError as exc:
            raise PoolExhaustedError(exc) from exc
        except RequestTooLargeError as exc:
            raise PoolRequestTooLargeError(exc) from exc
        return self._book(lease, by_key, request_kwargs)

    async def async_get_available_deployment(  # type: ignore[override]  # see above
        self,
        model: str,
        messages: list[dict[str, str]] | None = None,
        input: str | list[object] | None = None,
        specific_deployment: bool | None = False,
        request_kwargs: dict[str, object] | None = None,
    ) -> Deployment:
        """Async twin of :meth:`get_available_deployment`."""
        pool, by_key, exclude = self._candidates(model, specific_deployment)
        await aprepare()  # the tokenizer's first load runs in a worker thread
        est = self._estimate(messages, input, request_kwargs)
        exclude = exclude + await self._acooled(by_key)
        w = who(request_kwargs, self.manager.settings.sticky_keys)
        try:
            lease = await self.manager.aacquire(
                pool, est, self.max_wait, exclude=exclude,
                affinity=w.affinity, priority=w.priority, tenant=w.tenant,
            )  # fmt: skip
        except AllKeysExhaustedError as exc:
            raise PoolExhaustedError(exc) from exc
        except RequestTooLargeError as exc:
            raise PoolRequestTooLargeError(exc) from exc
        return self._book(lease, by_key, request_kwargs)
