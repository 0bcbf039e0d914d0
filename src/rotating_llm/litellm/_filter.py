"""``RotatingFilter``: the limiter as a LiteLLM callback, for the proxy (async only).

The LiteLLM proxy builds its own ``Router`` and cannot be given a custom routing strategy
from its config, but it loads ``CustomLogger`` instances from ``litellm_settings.callbacks``.
LiteLLM runs every callback's ``async_filter_deployments`` on the deployments that survived
its own checks (cooldowns included), before its strategy picks. This callback reserves one
of them in Redis and narrows the list to it; its success and failure events settle the lease.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from rotating_llm.config import Settings, Strategy
from rotating_llm.errors import AllKeysExhaustedError, ConfigError, RequestTooLargeError
from rotating_llm.keys.models import APIKey
from rotating_llm.litellm._book import LeaseBook, stamp
from rotating_llm.litellm._callback import LeaseSettler
from rotating_llm.litellm._errors import PoolExhaustedError, PoolRequestTooLargeError
from rotating_llm.litellm._install import keys_from_file, new_manager
from rotating_llm.litellm._keys import deployment_id, deployment_key, estimate_tokens
from rotating_llm.litellm._strategy import Estimator
from rotating_llm.litellm._who import who
from rotating_llm.tokens import aprepare

__all__ = ["RotatingFilter"]


class RotatingFilter(LeaseSettler):
    """Narrows each async pick to one deployment reserved in the shared limiter.

    For the LiteLLM proxy (``litellm_settings.callbacks``) or any async ``Router`` whose
    strategy must stay LiteLLM's own. The sync path (``Router.completion``) runs no
    deployment filters: use :func:`~rotating_llm.litellm.install` there.

    Args:
        redis_url: Redis shared by every proxy worker (``None``: ``REDIS_URL``).
        key_prefix: Prefix of the limiter's Redis keys.
        window_seconds: RPM/TPM sliding window.
        max_wait: Seconds a pick may wait for capacity before ``PoolExhaustedError``.
        strategy: ``most_headroom`` (default), ``round_robin`` or ``weighted``.
        keys_file: A keys file whose entries override deployments' limits.
        settings: Base settings (overridden by the arguments above).
        estimator: ``(messages, input, request_kwargs) -> tokens``.
        tpm_counts: Settle with ``"total"`` or ``"input"`` tokens.
        lease_ttl: Seconds an unsettled lease is remembered for its callback.
        model_groups: The model groups this filter picks for (``None``: every group);
            the deployments of others pass untouched, so filters with other settings
            (a window, a ``max_wait``) can serve them side by side.
    """

    def __init__(
        self,
        *,
        redis_url: str | None = None,
        key_prefix: str | None = None,
        window_seconds: float | None = None,
        max_wait: float | None = None,
        strategy: Strategy | None = None,
        keys_file: str | Path | None = None,
        settings: Settings | None = None,
        estimator: Estimator | None = None,
        tpm_counts: Literal["total", "input"] = "total",
        lease_ttl: float = 600.0,
        model_groups: Iterable[str] | None = None,
    ) -> None:
        super().__init__(LeaseBook(lease_ttl), tpm_counts)
        if isinstance(model_groups, str):
            raise ConfigError("model_groups must be a list of model group names, not a string")
        self.model_groups = None if model_groups is None else frozenset(model_groups)
        #: Distinct per filter: LiteLLM adds a callback to its success and failure lists
        #: once per class and public ``str``/``int``/``bool`` attributes, so a second
        #: filter (other groups, another window) would otherwise pick but never settle.
        self.filter_id = uuid.uuid4().hex[:12]
        self.manager = new_manager(
            settings,
            redis_url=redis_url,
            key_prefix=key_prefix,
            window_seconds=window_seconds,
            max_wait=max_wait,
            strategy=strategy,
        )
        self.max_wait = max_wait
        self.estimator: Estimator = estimator or estimate_tokens
        self.keys_file_keys = keys_from_file(keys_file)
        self._known: dict[str, dict[str, APIKey]] = {}
        self._sync_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RotatingFilter(manager={self.manager!r}, open_leases={self.pending})"

    def _learn(self, pool: str, keys: list[APIKey]) -> None:
        """Add keys first seen (or changed) to the manager; keys are never dropped here."""
        with self._sync_lock:
            known = self._known.setdefault(pool, {})
            for key in keys:
                old = known.get(key.key_id)
                if old == key:
                    continue
                if old is not None:
                    self.manager.remove_key(key.key_id)
                self.manager.add_key(key)
                known[key.key_id] = key

    async def async_filter_deployments(
        self,
        model: str,
        healthy_deployments: list[Any],
        messages: list[Any] | None,
        request_kwargs: dict[str, Any] | None = None,
        parent_otel_span: Any = None,
    ) -> list[Any]:
        """Reserve one of ``healthy_deployments`` and return only it.

        Raises:
            PoolExhaustedError: No deployment has room within ``max_wait``.
            PoolRequestTooLargeError: The request exceeds every deployment's TPM.
        """
        deps = [d for d in healthy_deployments if isinstance(d, Mapping)]
        if not deps:
            return healthy_deployments
        pool = str(deps[0].get("model_name"))
        if self.model_groups is not None and pool not in self.model_groups:
            return healthy_deployments  # another filter's group
        deps = [d for d in deps if str(d.get("model_name")) == pool]
        keys: dict[str, tuple[APIKey, Mapping[str, Any]]] = {}
        for dep in deps:
            key = deployment_key(dep, pool, self.keys_file_keys)
            keys.setdefault(key.key_id, (key, dep))
        known = self._known.get(pool, {})
        if any(known.get(kid) != key for kid, (key, _) in keys.items()):
            await asyncio.to_thread(self._learn, pool, [key for key, _ in keys.values()])
        exclude = [kid for kid in self._known.get(pool, {}) if kid not in keys]
        await aprepare()  # the tokenizer's first load runs in a worker thread
        est = int(self.estimator(messages, None, request_kwargs))
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
        self.book.add(stamp(request_kwargs), lease)
        chosen = keys[lease.key_id][1]
        return [
            d
            for d in healthy_deployments
            if d is chosen or (isinstance(d, Mapping) and deployment_id(d) == deployment_id(chosen))
        ]

    def close(self) -> None:
        """Unregister from LiteLLM and close the manager's connections."""
        self.unregister()
        self.manager.close()

    async def aclose(self) -> None:
        """Async twin of :meth:`close`: also closes the running loop's connections."""
        self.unregister()
        await self.manager.aclose()
