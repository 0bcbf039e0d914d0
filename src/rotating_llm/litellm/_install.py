"""``install``: one call that puts the strategy and its callback on an existing ``Router``."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from rotating_llm.config import Settings, Strategy
from rotating_llm.keys.loader import load_keys_file
from rotating_llm.keys.manager import KeyManager
from rotating_llm.keys.models import APIKey
from rotating_llm.litellm._book import LeaseBook
from rotating_llm.litellm._callback import LeaseSettler
from rotating_llm.litellm._keys import DeploymentSecretStore
from rotating_llm.litellm._strategy import (
    Estimator,
    RotatingStrategy,
    group_keys,
    router_deployments,
)

__all__ = ["Installed", "install", "uninstall"]

logger = logging.getLogger("rotating_llm.litellm")


class Installed(RotatingStrategy):
    """What :func:`install` returns: the strategy, with its callback and manager.

    Attributes:
        settler: The :class:`LeaseSettler` registered with LiteLLM.
        manager: The core's :class:`~rotating_llm.keys.KeyManager` (statuses, cooldowns).
    """

    settler: LeaseSettler

    def close(self) -> None:
        """Unregister the callback and close the manager's connections."""
        uninstall(self)

    async def aclose(self) -> None:
        """Async twin of :meth:`close`: also closes the running loop's connections."""
        self.settler.unregister()
        await self.manager.aclose()


def new_manager(
    settings: Settings | None = None, keys: Iterable[APIKey] = (), **overrides: Any
) -> KeyManager:
    """A key manager for LiteLLM deployments: ``settings`` (default: the environment)
    with the non-``None`` ``overrides``, and a secret store that holds no secret."""
    base = settings or Settings.from_env()
    merged = base.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    return KeyManager(
        list(keys),
        settings=Settings.model_validate(merged.model_dump()),
        secret_store=DeploymentSecretStore(),
    )


def keys_from_file(path: str | Path | None) -> dict[str, APIKey]:
    """Keys-file entries by key id (empty without a file)."""
    return {k.key_id: k for k in load_keys_file(path)} if path is not None else {}


def _register_strategy(router: Any, strategy: RotatingStrategy) -> str:
    register = getattr(router, "register_plugin", None)
    if callable(register):  # litellm >= 1.110; set_custom_routing_strategy warns there
        register(strategy)
        return "register_plugin"
    router.set_custom_routing_strategy(strategy)
    return "set_custom_routing_strategy"


def install(
    router: Any,
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
    respect_litellm_cooldowns: bool = True,
    lease_ttl: float = 600.0,
) -> Installed:
    """Route ``router``'s picks through the shared limiter and settle them from its callbacks.

    Every deployment becomes a key (id: ``model_info.id``) of the pool named after its
    model group; limits come from ``keys_file`` (matched by deployment id) or the
    deployment's ``litellm_params`` ``rpm``/``tpm``/``rpd``; a deployment without limits
    is never refused. Arguments left ``None`` come from ``settings`` or the environment
    (``REDIS_URL``, ``ROTATING_LLM_*``).

    Args:
        router: An existing ``litellm.Router``.
        redis_url: Redis shared by every process (``None``: ``REDIS_URL``).
        key_prefix: Prefix of the limiter's Redis keys.
        window_seconds: RPM/TPM sliding window (60 unless testing).
        max_wait: Seconds a pick may wait for capacity before ``PoolExhaustedError``.
        strategy: ``most_headroom`` (default), ``round_robin`` or ``weighted``.
        keys_file: A keys file whose entries override deployments' limits.
        settings: Base settings (overridden by the arguments above).
        estimator: ``(messages, input, request_kwargs) -> tokens`` (default: ~4 chars/token).
        tpm_counts: Settle with ``"total"`` tokens (default) or ``"input"`` tokens only.
        respect_litellm_cooldowns: Skip deployments LiteLLM itself has cooled down.
        lease_ttl: Seconds an unsettled lease is remembered for its callback.

    Returns:
        The installed strategy; ``close()`` (or :func:`uninstall`) removes the callback.
    """
    file_keys = keys_from_file(keys_file)
    pools: dict[str, list[Any]] = {}
    for dep in router_deployments(router, None):
        pools.setdefault(str(dep.get("model_name")), []).append(dep)
    keys = [key for pool, deps in pools.items() for key in group_keys(pool, deps, file_keys)]
    manager = new_manager(
        settings,
        keys,
        redis_url=redis_url,
        key_prefix=key_prefix,
        window_seconds=window_seconds,
        max_wait=max_wait,
        strategy=strategy,
    )
    book = LeaseBook(lease_ttl)
    installed = Installed(
        router,
        manager,
        book,
        max_wait=max_wait,
        estimator=estimator,
        keys_file_keys=file_keys,
        respect_litellm_cooldowns=respect_litellm_cooldowns,
    )
    installed.prime(pools)
    installed.settler = LeaseSettler(book, tpm_counts)
    installed.settler.register()
    how = _register_strategy(router, installed)
    logger.info("rotating-llm routes %d model group(s) via %s", len(pools), how)
    return installed


def uninstall(installed: Installed) -> None:
    """Remove the callback :func:`install` registered and close the manager.

    The router keeps the strategy object until its routing strategy is changed.
    """
    installed.settler.unregister()
    installed.manager.close()
