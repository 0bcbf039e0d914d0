"""Every exception rotating-llm raises, in one flat module.

Hierarchy::

    RotatingLLMError
    ├── ConfigError                  bad settings or arguments
    │   └── KeyFileError             a keys file that cannot be loaded (file, entry, field)
    ├── KeyNotFoundError             an unknown key_id (also a KeyError)
    ├── ConversationError            a bad conversation id or message, an unreadable stored one
    ├── SecretStoreError             a secret cannot be read (never contains the secret)
    ├── StoreError                   the Redis store answered with an error
    │   └── StoreUnavailableError    the Redis store cannot be reached
    │       └── StoreTimeoutError    Redis is slow, not lost (also an AllKeysExhaustedError)
    ├── CapacityError                the pool cannot serve a request
    │   ├── AllKeysExhaustedError    no key has room within max_wait (retry_after, reasons,
    │   │                            queue_position, expected_wait)
    │   └── RequestTooLargeError     the request exceeds every key's TPM: it can never be served
    ├── ProviderError                the provider failed a request rotation could not fix
    └── LeaseError                   a lease used after it was settled, or settled wrongly

Faces (LangChain, LiteLLM) subclass these with their framework's own types;
this module imports neither framework.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rotating_llm.failures import FailureKind

__all__ = [
    "AllKeysExhaustedError",
    "CapacityError",
    "ConfigError",
    "ConversationError",
    "KeyFileError",
    "KeyNotFoundError",
    "LeaseError",
    "ProviderError",
    "RequestTooLargeError",
    "RotatingLLMError",
    "SecretStoreError",
    "StoreError",
    "StoreUnavailableError",
]


class RotatingLLMError(Exception):
    """Base class of every error raised by rotating-llm."""


class ConfigError(RotatingLLMError, ValueError):
    """A setting, argument or file content is invalid."""


class KeyFileError(ConfigError):
    """A keys file cannot be loaded.

    Attributes:
        path: The file.
        entry: Index of the offending entry in ``keys`` (or ``quota_groups``), if any.
        field: The offending field, if any.
        section: The list the entry is in: ``keys`` or ``quota_groups``.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str,
        entry: int | None = None,
        key_id: str | None = None,
        field: str | None = None,
        section: str = "keys",
    ) -> None:
        self.path = path
        self.entry = entry
        self.key_id = key_id
        self.field = field
        self.section = section
        where = path
        if entry is not None:
            where += f": {section}[{entry}]"
            if key_id:
                where += f" ({key_id!r})"
        if field:
            where += f", field {field!r}"
        super().__init__(f"{where}: {message}")


class KeyNotFoundError(RotatingLLMError, KeyError):
    """No key with this ``key_id`` is known to the manager."""

    def __init__(self, key_id: str) -> None:
        self.key_id = key_id
        super().__init__(key_id)

    def __str__(self) -> str:
        return f"unknown key_id {self.key_id!r}"


class ConversationError(RotatingLLMError, ValueError):
    """A conversation id or message is invalid, or a stored message cannot be read."""


class SecretStoreError(RotatingLLMError):
    """A secret could not be read. The message names the key id and store, never the value."""

    def __init__(
        self, message: str, *, key_id: str | None = None, store: str | None = None
    ) -> None:
        self.key_id = key_id
        self.store = store
        super().__init__(message)


class StoreError(RotatingLLMError):
    """The Redis store answered with an error."""


class StoreUnavailableError(StoreError):
    """The Redis store cannot be reached (connection refused, timeout, cluster down)."""


class CapacityError(RotatingLLMError):
    """The pool cannot serve a request."""


class AllKeysExhaustedError(CapacityError):
    """No key of the pool has capacity within ``max_wait``.

    Attributes:
        model: The pool (model name).
        retry_after: Seconds until capacity returns, measured on Redis's clock;
            ``None`` when no key will ever have room (all disabled or inactive).
        reasons: ``key_id`` -> why that key could not serve (``"rpm"``, ``"tpm"``,
            ``"rpd"``, ``"cooldown: ..."``, ``"disabled: ..."``).
        queue_position: How many waiters of the pool's queue were ahead of the caller
            when it gave up (0: it was next); ``None`` when it was not queued.
        expected_wait: The expected wait in the queue then, in seconds (``None``:
            unknown, or not queued).
    """

    def __init__(
        self,
        model: str,
        retry_after: float | None,
        reasons: Mapping[str, str] | None = None,
        message: str | None = None,
        *,
        queue_position: int | None = None,
        expected_wait: float | None = None,
    ) -> None:
        self.model = model
        self.retry_after = retry_after
        self.reasons: dict[str, str] = dict(reasons or {})
        self.queue_position = queue_position
        self.expected_wait = expected_wait
        if message is None:
            when = (
                f"capacity returns in {retry_after:.3f}s"
                if retry_after is not None
                else "no key will have capacity (all disabled or inactive)"
            )
            detail = ", ".join(f"{k}: {v}" for k, v in sorted(self.reasons.items()))
            message = f"No keys with available capacity for model {model!r}: {when}"
            if detail:
                message += f" [{detail}]"
            if queue_position is not None:
                message += f"; {queue_position} ahead in the queue"
                if expected_wait is not None:
                    message += f", expected wait {expected_wait:.3f}s"
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        # (the default calls __init__ with args alone: retry_after would be missing)
        return (_rebuild, (type(self), self.args, self.__dict__))


class StoreTimeoutError(StoreUnavailableError, AllKeysExhaustedError):
    """Redis did not answer within the call's deadline but is not lost (slow, stalled).

    No failover follows: Redis still holds the limits. In ``allow`` mode the caller
    proceeds without a reservation, as for any unavailable store. Otherwise it is a
    refusal too (an :class:`AllKeysExhaustedError`, ``retry_after`` one second by
    default): no capacity was decided within what the caller allowed, and a face that
    turns refusals into its own (LiteLLM's, LangChain's fallbacks) does so for this one.
    """

    def __init__(self, message: str, *, model: str = "", retry_after: float = 1.0) -> None:
        AllKeysExhaustedError.__init__(self, model, retry_after, None, message)


class RequestTooLargeError(CapacityError, ValueError):
    """The request's estimated tokens exceed the TPM of every key in the pool."""

    def __init__(self, model: str, estimated_tokens: int, max_tpm: int | None) -> None:
        self.model = model
        self.estimated_tokens = estimated_tokens
        self.max_tpm = max_tpm
        super().__init__(
            f"Request of {estimated_tokens} estimated tokens can never be served by model "
            f"{model!r}: the largest TPM of its active keys is {max_tpm}"
        )


class ProviderError(RotatingLLMError):
    """The provider failed a request and rotation could not (or must not) fix it.

    Attributes:
        model: The pool.
        key_id: The key that served the last attempt (never the secret).
        kind: The :class:`~rotating_llm.failures.FailureKind` of the last failure.
        status: The provider's HTTP status, if any.
        attempts: Provider calls made for this request.
    """

    def __init__(
        self,
        message: str,
        *,
        model: str,
        key_id: str | None,
        kind: FailureKind,
        status: int | None = None,
        attempts: int = 1,
    ) -> None:
        self.model = model
        self.key_id = key_id
        self.kind = kind
        self.status = status
        self.attempts = attempts
        super().__init__(message)


class LeaseError(RotatingLLMError):
    """A lease was used wrongly (for example settled with negative tokens)."""


def _rebuild(cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    """An unpickled exception: its message arguments and attributes, without __init__."""
    exc = cls.__new__(cls, *args)
    exc.args = args
    exc.__dict__.update(state)
    return exc
