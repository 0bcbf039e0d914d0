"""Open leases by request: the thread from a deployment's selection to LiteLLM's callback."""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rotating_llm.keys.lease import Lease

__all__ = ["TOKEN_FIELD", "LeaseBook", "metadata_of", "stamp"]

#: Metadata field carrying the request's token from the selection to the callbacks.
TOKEN_FIELD = "rotating_llm_request"


def metadata_of(kwargs: Mapping[str, Any]) -> Mapping[str, Any]:
    """The metadata LiteLLM hands a callback (``litellm_params.metadata`` and friends), merged."""
    merged: dict[str, Any] = {}
    params = kwargs.get("litellm_params")
    sources = [kwargs.get("metadata"), kwargs.get("litellm_metadata")]
    if isinstance(params, Mapping):
        sources += [params.get("litellm_metadata"), params.get("metadata")]
    for source in sources:
        if isinstance(source, Mapping):
            merged.update(source)
    return merged


def stamp(request_kwargs: MutableMapping[str, Any] | None) -> str:
    """The request's token: read from its metadata, or created and written there.

    Retries of one request reuse the token; every attempt's lease is booked under it.
    """
    token = uuid.uuid4().hex
    if request_kwargs is None:
        return token
    name = "litellm_metadata" if "litellm_metadata" in request_kwargs else "metadata"
    bucket = request_kwargs.get(name)
    if not isinstance(bucket, MutableMapping):
        bucket = {} if bucket is None else dict(bucket) if isinstance(bucket, Mapping) else {}
        request_kwargs[name] = bucket
    existing = bucket.get(TOKEN_FIELD)
    if isinstance(existing, str) and existing:
        return existing
    bucket[TOKEN_FIELD] = token
    return token


class LeaseBook:
    """Leases not settled yet, by request token, forgotten after ``ttl`` seconds.

    A lease whose callback never comes (a stream abandoned mid-way, a crashed worker) is
    dropped from this book after ``ttl``; its reservation keeps counting at its estimate
    until it leaves the limiter's sliding window, and no longer.
    """

    def __init__(self, ttl: float = 600.0) -> None:
        self.ttl = ttl
        self._open: OrderedDict[str, tuple[float, list[Lease]]] = OrderedDict()
        self._lock = threading.Lock()
        #: Leases dropped unsettled after ``ttl``.
        self.expired = 0

    def __len__(self) -> int:
        with self._lock:
            return sum(len(leases) for _, leases in self._open.values())

    def add(self, token: str, lease: Lease) -> None:
        """Book ``lease`` under ``token`` (and forget leases older than ``ttl``)."""
        now = time.monotonic()
        with self._lock:
            _, leases = self._open.pop(token, (now, []))
            leases.append(lease)
            self._open[token] = (now, leases)
            while self._open:
                first = next(iter(self._open))
                at, old = self._open[first]
                if now - at <= self.ttl:
                    break
                del self._open[first]
                self.expired += sum(1 for x in old if not x.settled)

    def take(self, token: str, key_id: str | None) -> Lease | None:
        """Remove and return the oldest open lease of ``token`` on ``key_id`` (any key if None)."""
        with self._lock:
            entry = self._open.get(token)
            if entry is None:
                return None
            _, leases = entry
            leases[:] = [x for x in leases if not x.settled]
            found = next((x for x in leases if key_id is None or x.key_id == key_id), None)
            if found is not None:
                leases.remove(found)
            if not leases:
                del self._open[token]
            return found
