"""One settings object, read from the environment when the object that needs it is created.

Every field has the environment variable it comes from in ``ENV_VARS``; the original design's
names (``REDIS_URL``, ``SECRET_STORE_TYPE``, ``CONVERSATION_TTL_SECONDS``, ...) are kept.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from rotating_llm._bounds import MAX_TICKET_SECONDS
from rotating_llm.errors import ConfigError

__all__ = ["ENV_VARS", "Settings"]

Strategy = Literal["most_headroom", "round_robin", "weighted"]
FailureMode = Literal["local", "allow", "deny"]

#: field name -> environment variable
ENV_VARS: dict[str, str] = {
    "redis_url": "REDIS_URL",
    "redis_cluster": "REDIS_CLUSTER",
    "secret_store_type": "SECRET_STORE_TYPE",
    "key_store_path": "KEY_STORE_PATH",
    "key_prefix": "ROTATING_LLM_KEY_PREFIX",
    "window_seconds": "ROTATING_LLM_WINDOW_SECONDS",
    "rpd_timezone": "ROTATING_LLM_RPD_TIMEZONE",
    "strategy": "ROTATING_LLM_STRATEGY",
    "on_store_failure": "ROTATING_LLM_ON_REDIS_FAILURE",
    "store_retry_interval": "ROTATING_LLM_REDIS_RETRY_SECONDS",
    "store_deadline": "ROTATING_LLM_REDIS_DEADLINE_SECONDS",
    "store_lost_after": "ROTATING_LLM_REDIS_LOST_SECONDS",
    "redis_max_connections": "ROTATING_LLM_REDIS_MAX_CONNECTIONS",
    "redis_pool_timeout": "ROTATING_LLM_REDIS_POOL_TIMEOUT",
    "max_wait": "ROTATING_LLM_MAX_WAIT",
    "sticky_keys": "ROTATING_LLM_STICKY_KEYS",
    "affinity_ttl_seconds": "ROTATING_LLM_AFFINITY_TTL_SECONDS",
    "queue_ticket_seconds": "ROTATING_LLM_QUEUE_TICKET_SECONDS",
    "probe_seconds": "ROTATING_LLM_PROBE_SECONDS",
    "heartbeat_seconds": "ROTATING_LLM_HEARTBEAT_SECONDS",
    "cooldown_base_seconds": "ROTATING_LLM_COOLDOWN_BASE_SECONDS",
    "cooldown_max_seconds": "ROTATING_LLM_COOLDOWN_MAX_SECONDS",
    "learn_ttl_seconds": "ROTATING_LLM_LEARN_TTL_SECONDS",
    "learn_raise": "ROTATING_LLM_LEARN_RAISE",
    "secret_cache_ttl": "SECRET_CACHE_TTL_SECONDS",
    "conversation_ttl_seconds": "CONVERSATION_TTL_SECONDS",
    "tenant_rpm": "ROTATING_LLM_TENANT_RPM",
    "tenant_tpm": "ROTATING_LLM_TENANT_TPM",
    "tenant_share": "ROTATING_LLM_TENANT_SHARE",
    "user_rpm_default": "USER_RPM_DEFAULT",
    "global_rpm_max": "GLOBAL_RPM_MAX",
    "router_enabled": "LLM_MULTI_KEY_ROUTER_ENABLED",
    "log_file": "ROTATING_LLM_LOG_FILE",
    "log_level": "ROTATING_LLM_LOG_LEVEL",
    "redact_logs": "ROTATING_LLM_REDACT_LOGS",
    "vault_addr": "VAULT_ADDR",
    "vault_token": "VAULT_TOKEN",
    "vault_secret_path": "VAULT_SECRET_PATH",
    "vault_role_id": "VAULT_ROLE_ID",
    "vault_secret_id": "VAULT_SECRET_ID",
    "vault_namespace": "VAULT_NAMESPACE",
    "vault_verify": "VAULT_VERIFY",
    "aws_region": "AWS_REGION",
    "aws_secret_prefix": "AWS_SECRET_PREFIX",
}


class Settings(BaseModel):
    """rotating-llm settings. Build with :meth:`from_env`, or directly for tests."""

    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)

    redis_url: str | None = None
    redis_cluster: bool = False
    secret_store_type: Literal["env", "vault", "aws"] = "env"
    key_store_path: Path = Path("keys.json")
    key_prefix: str = "rllm:"
    window_seconds: float = Field(60.0, gt=0)
    rpd_timezone: str = "America/Los_Angeles"
    strategy: Strategy = "most_headroom"
    on_store_failure: FailureMode = "local"
    store_retry_interval: float = Field(1.0, gt=0)
    #: What a store call may take past the caller's ``max_wait`` (seconds).
    store_deadline: float = Field(1.0, gt=0, le=3600.0)
    #: Redis is lost (failover) after this long without answering a probe (seconds).
    store_lost_after: float = Field(3.0, gt=0, le=3600.0)
    redis_max_connections: int = Field(64, gt=0)
    redis_pool_timeout: float = Field(30.0, gt=0)
    max_wait: float = Field(30.0, ge=0)
    #: The faces pass a conversation's id as the acquire's ``affinity`` (off: never).
    sticky_keys: bool = True
    #: How long the pool remembers which key served an affinity (seconds, at most a week).
    affinity_ttl_seconds: float = Field(3600.0, gt=0, le=7 * 86400)
    #: How long a waiter's place in the pool's queue lasts unless renewed (seconds; a
    #: waiter renews it three times as often): a dead waiter blocks the queue no longer.
    queue_ticket_seconds: float = Field(3.0, gt=0, le=MAX_TICKET_SECONDS)
    probe_seconds: float = Field(300.0, ge=0, le=86400.0)
    #: How often a long-lived manager on a Redis says it is alive (0: never).
    heartbeat_seconds: float = Field(10.0, ge=0, le=3600.0)
    cooldown_base_seconds: float = Field(5.0, gt=0)
    cooldown_max_seconds: float = Field(300.0, gt=0)
    #: How long a limit learned from the provider holds (renewed by each answer that
    #: states it again).
    learn_ttl_seconds: float = Field(86400.0, gt=0, le=7 * 86400.0)
    #: Whether a provider's x-ratelimit-limit-* header may raise a limit above the file's.
    learn_raise: bool = False
    secret_cache_ttl: float = Field(300.0, ge=0)
    conversation_ttl_seconds: int = Field(86400, gt=0)
    #: Every tenant's cap per pool and window, unless the keys file's ``tenants`` names
    #: it (or has a ``"*"`` entry): requests, tokens, a share of the pool's capacity.
    tenant_rpm: int | None = Field(None, gt=0, le=10**12)
    tenant_tpm: int | None = Field(None, gt=0, le=10**12)
    tenant_share: float | None = Field(None, gt=0, le=1, allow_inf_nan=False)
    user_rpm_default: int = Field(10, gt=0)
    global_rpm_max: int = Field(1000, gt=0)
    #: Rotation is on unless LLM_MULTI_KEY_ROUTER_ENABLED is explicitly false (the off switch).
    router_enabled: bool = True
    log_file: Path | None = None
    log_level: str = "INFO"
    redact_logs: bool = True
    vault_addr: str | None = None
    vault_token: SecretStr | None = None
    vault_secret_path: str = "secret/llm"
    vault_role_id: str | None = None
    vault_secret_id: SecretStr | None = None
    vault_namespace: str | None = None
    vault_verify: str = "true"
    aws_region: str = "us-east-1"
    aws_secret_prefix: str = "llm/"

    @field_validator("rpd_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # "America" is a folder
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("key_prefix")
    @classmethod
    def _prefix_has_no_braces(cls, value: str) -> str:
        if "{" in value or "}" in value:
            raise ValueError("must not contain '{' or '}' (they are used as the hash tag)")
        return value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read settings from ``environ`` (default ``os.environ``); ``overrides`` win.

        Raises:
            ConfigError: naming the environment variable whose value is invalid.
        """
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field, var in ENV_VARS.items():
            raw = env.get(var)
            if raw is not None and raw.strip() != "":
                values[field] = raw.strip()
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                name = str(err["loc"][0]) if err["loc"] else "?"
                source = ENV_VARS.get(name, name) if name not in overrides else name
                problems.append(f"{source}: {err['msg']}")
            raise ConfigError("invalid settings: " + "; ".join(problems)) from None
