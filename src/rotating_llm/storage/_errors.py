"""The one place where redis-py's exceptions become rotating-llm's."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis.exceptions as rex

from rotating_llm.errors import StoreError, StoreUnavailableError

__all__ = ["translate_errors"]


def _pool_exhausted(exc: BaseException) -> bool:
    """The client's own connection pool is full: Redis is fine, callers are many.

    Failing over then would hand out reservations Redis cannot see. redis-py raises
    ``MaxConnectionsError`` from plain pools, and a bare ``ConnectionError("No connection
    available.")`` when a blocking pool's wait times out.
    """
    return isinstance(exc, rex.MaxConnectionsError) or str(exc) == "No connection available."


_UNAVAILABLE: tuple[type[BaseException], ...] = (
    rex.TimeoutError,
    rex.ClusterDownError,
    rex.MasterDownError,
    rex.TryAgainError,
    ConnectionError,
    TimeoutError,
    OSError,
)


@contextmanager
def translate_errors(operation: str, where: str) -> Iterator[None]:
    """Re-raise driver errors raised inside the block as :class:`StoreError` subclasses.

    Args:
        operation: What was being done (``"acquire"``), for the message.
        where: The store's safe description (URL without password).
    """
    try:
        yield
    except rex.ConnectionError as exc:
        if _pool_exhausted(exc):
            raise StoreError(
                f"Redis at {where}: no free connection during {operation} "
                f"(too many concurrent callers; raise ROTATING_LLM_REDIS_MAX_CONNECTIONS)"
            ) from exc
        if isinstance(exc, rex.AuthenticationError):
            raise StoreError(
                f"Redis at {where} refused the credentials during {operation}"
            ) from exc
        raise StoreUnavailableError(
            f"Redis at {where} is unavailable during {operation}: {type(exc).__name__}: {exc}"
        ) from exc
    except _UNAVAILABLE as exc:
        raise StoreUnavailableError(
            f"Redis at {where} is unavailable during {operation}: {type(exc).__name__}: {exc}"
        ) from exc
    except rex.RedisError as exc:
        raise StoreError(
            f"Redis at {where} failed during {operation}: {type(exc).__name__}: {exc}"
        ) from exc
