"""``APIKey``: one API key's identity and limits. The secret itself is never part of it."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rotating_llm._bounds import MAX_LIMIT, MAX_TIER, MAX_WEIGHT

__all__ = ["APIKey", "QuotaGroup", "TenantCap"]

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$")
_GROUP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_GROUP_ID_RULE = "must be 1-64 letters, digits and . _ - (starting with a letter or digit)"
_URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$")

#: A limit: an int (never a bool, float or string) from 1 to MAX_LIMIT.
PositiveInt = Annotated[int, Field(gt=0, le=MAX_LIMIT, strict=True)]


class APIKey(BaseModel):
    """An API key of one model pool, as in the original design's ``keys.json``.

    Attributes:
        key_id: Unique name of the key (the secret is looked up by it).
        model_name: The model, which is also the pool the key belongs to.
        provider: ``gemini``, ``openai`` or another provider name.
        rpm: Requests per sliding minute.
        tpm: Tokens per sliding minute.
        rpd: Requests per day (reset at midnight in the configured zone), or ``None``.
        tpd: Tokens per day (reset with ``rpd``), or ``None``.
        active: Inactive keys are never selected.
        tags: Free-form labels (``{"tier": "free"}``).
        weight: Relative share under the ``weighted`` strategy.
        base_url: Endpoint this key belongs to; every face sends its requests there.
        quota_group: The :class:`QuotaGroup` whose limits this key shares with others
            (keys of one provider project), or ``None``.
        tier: 0 (default) to ``MAX_TIER``: a key is granted only when no key of a lower
            tier of its pool has room (free keys at 0, paid ones above as overflow).
    """

    model_config = ConfigDict(
        defer_build=True, extra="forbid", frozen=True, str_strip_whitespace=True
    )

    key_id: str
    model_name: str = Field(min_length=1, max_length=200)
    provider: str = Field(min_length=1, max_length=64)
    rpm: PositiveInt
    tpm: PositiveInt
    rpd: PositiveInt | None = None
    tpd: PositiveInt | None = None
    active: bool = True
    tags: dict[str, str] = Field(default_factory=dict)
    weight: float = Field(1.0, gt=0, le=MAX_WEIGHT, allow_inf_nan=False)
    base_url: str | None = None
    quota_group: str | None = None
    tier: int = Field(0, ge=0, le=MAX_TIER, strict=True)

    @field_validator("quota_group")
    @classmethod
    def _valid_group(cls, value: str | None) -> str | None:
        if value is not None and not _GROUP_ID.match(value):
            raise ValueError(_GROUP_ID_RULE)
        return value

    @field_validator("key_id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError(
                "must be 1-128 characters: letters, digits and . _ : @ / - "
                "(starting with a letter or digit)"
            )
        return value

    @field_validator("model_name")
    @classmethod
    def _valid_model(cls, value: str) -> str:
        if any(c in value for c in "{},") or any(c.isspace() for c in value):
            raise ValueError("must not contain braces, commas or whitespace")
        return value

    @field_validator("provider")
    @classmethod
    def _lower_provider(cls, value: str) -> str:
        return value.lower()

    @field_validator("base_url")
    @classmethod
    def _valid_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _URL.match(value):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")


class QuotaGroup(BaseModel):
    """Limits that several keys share, as providers count them (one Gemini project, one
    OpenAI organization): a grant must fit its key's limits and its group's.

    Attributes:
        group_id: Unique name of the group; keys name it in ``quota_group``.
        rpm: Requests per sliding minute of all its keys together, or ``None``.
        tpm: Tokens per sliding minute, or ``None``.
        rpd: Requests per day (reset with every key's ``rpd``), or ``None``.
        tpd: Tokens per day, or ``None``. At least one limit is set.
    """

    model_config = ConfigDict(
        defer_build=True, extra="forbid", frozen=True, str_strip_whitespace=True
    )

    group_id: str
    rpm: PositiveInt | None = None
    tpm: PositiveInt | None = None
    rpd: PositiveInt | None = None
    tpd: PositiveInt | None = None

    @field_validator("group_id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        if not _GROUP_ID.match(value):
            raise ValueError(_GROUP_ID_RULE)
        return value

    @model_validator(mode="after")
    def _some_limit(self) -> QuotaGroup:
        if self.rpm is None and self.tpm is None and self.rpd is None and self.tpd is None:
            raise ValueError("a quota group needs at least one of rpm, tpm, rpd, tpd")
        return self


class TenantCap(BaseModel):
    """A tenant's cap in every pool: its requests may take no more than this of a pool.

    ``rpm``/``tpm`` are absolute per sliding window; ``share`` is a fraction of the pool's
    capacity (the sum of its active keys' ``rpm`` and ``tpm`` in the keys file; a pool
    with a key without a limit has no such capacity, so a share caps nothing there). Given
    both, the lower cap of each holds.

    Attributes:
        tenant: The tenant's name as the faces pass it (``"*"``: every tenant without an
            entry of its own).
        rpm: Requests per sliding window, or ``None``.
        tpm: Tokens per sliding window, or ``None``.
        share: A fraction of the pool's RPM and TPM, more than 0 and at most 1, or ``None``.
    """

    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)

    tenant: str = Field(min_length=1, max_length=256)
    rpm: PositiveInt | None = None
    tpm: PositiveInt | None = None
    share: float | None = Field(default=None, gt=0, le=1, allow_inf_nan=False)

    @field_validator("share", mode="before")
    @classmethod
    def _share_is_a_number(cls, value: object) -> object:
        if isinstance(value, (bool, str)):
            raise ValueError("must be a number more than 0 and at most 1")
        return value

    @model_validator(mode="after")
    def _some_cap(self) -> TenantCap:
        if self.rpm is None and self.tpm is None and self.share is None:
            raise ValueError("a tenant cap needs at least one of rpm, tpm, share")
        return self
