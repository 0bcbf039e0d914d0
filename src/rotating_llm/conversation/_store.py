"""``ConversationStore``: conversation history in Redis that outlives any key rotation.

Keys (under the configured prefix), sharing the hash tag ``{<conv_id>}`` so a whole
conversation lives on one cluster slot::

    <prefix>conv:messages:{<conv_id>}   list of messages (JSON, ``message_to_dict`` form)
    <prefix>conv:meta:{<conv_id>}       hash: message_count, total_tokens, last_model,
                                        last_key_id, turn_count, created_at, updated_at
    <prefix>conv:turns:{<conv_id>}      sorted set: idempotency keys of the newest
                                        1000 turns (score: Redis time stored)

Every write is one Lua script (atomic) that refreshes the TTL of the keys, reading the
time from Redis. Under contention the script decides: a turn's ``system_message`` is
stored only if the conversation is still empty when the turn lands, and a turn whose
idempotency key was seen is not stored again (a resend after a lost acknowledgement).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rotating_llm.config import Settings
from rotating_llm.conversation._messages import (
    ConversationError,
    decode_message,
    encode_message,
    make_message,
)
from rotating_llm.conversation._scripts import (
    APPEND,
    TRUNCATE,
    check_count,
    check_idempotency_key,
)
from rotating_llm.conversation._scripts import (
    check_id as _check_id,
)
from rotating_llm.storage import Store, open_store, translate_errors

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript, Script

__all__ = ["ConversationStore", "get_conversation_store"]

_INT_FIELDS = ("message_count", "total_tokens", "turn_count")
_FLOAT_FIELDS = ("created_at", "updated_at")


def _metadata(raw: Mapping[str, str], ttl: int) -> dict[str, Any] | None:
    if not raw:
        return None
    meta: dict[str, Any] = {
        "message_count": 0,
        "total_tokens": 0,
        "turn_count": 0,
        "last_model": None,
        "last_key_id": None,
    }
    for name, value in raw.items():
        if name in _INT_FIELDS:
            meta[name] = int(value)
        elif name in _FLOAT_FIELDS:
            meta[name] = float(value)
        else:
            meta[name] = value
    meta["ttl_seconds"] = ttl if ttl >= 0 else None
    return meta


def _encode_system(message: Mapping[str, Any]) -> str:
    try:
        return encode_message(message)
    except ConversationError as exc:
        raise ConversationError(str(exc).replace("message 0", "system_message", 1)) from None


class ConversationStore:
    """Conversations in Redis: atomic turns, metadata, truncation and a TTL.

    Args:
        settings: Default: :meth:`Settings.from_env` (``REDIS_URL``, the key prefix and
            ``CONVERSATION_TTL_SECONDS``). No ``REDIS_URL``: the embedded in-process store.
        store: An open :class:`~rotating_llm.storage.Store` to use instead of opening one.
        ttl_seconds: Override of ``settings.conversation_ttl_seconds``.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        store: Store | None = None,
        ttl_seconds: int | None = None,
    ) -> None:
        self.settings = settings or Settings.from_env()
        self.store = store or open_store(self.settings)
        ttl = self.settings.conversation_ttl_seconds if ttl_seconds is None else ttl_seconds
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
            raise ConversationError(f"ttl_seconds must be a positive integer, got {ttl!r}")
        self.ttl_seconds = ttl
        self._scripts: dict[str, Script] = {}
        self._ascripts: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, AsyncScript]
        ] = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        return f"ConversationStore(store={self.store!r}, ttl_seconds={self.ttl_seconds})"

    # -- keys and scripts -------------------------------------------------------------

    @staticmethod
    def check_id(conv_id: object) -> str:
        """``conv_id`` if it is a usable conversation id, else ``ConversationError``."""
        return _check_id(conv_id)

    def keys_for(self, conv_id: str) -> tuple[str, str]:
        """The Redis keys of ``conv_id``: ``(messages list, metadata hash)``."""
        tag = "{" + _check_id(conv_id) + "}"
        return self.store.key("conv", "messages", tag), self.store.key("conv", "meta", tag)

    def turns_key(self, conv_id: str) -> str:
        """The Redis key of ``conv_id``'s idempotency keys (a sorted set)."""
        return self.store.key("conv", "turns", "{" + _check_id(conv_id) + "}")

    def _all_keys(self, conv_id: str) -> list[str]:
        return [*self.keys_for(conv_id), self.turns_key(conv_id)]

    def _script(self, name: str, source: str) -> Script:
        found = self._scripts.get(name)
        if found is None:
            found = self._scripts[name] = self.store.sync.register_script(source)
        return found

    def _ascript(self, name: str, source: str) -> AsyncScript:
        table = self._ascripts.setdefault(asyncio.get_running_loop(), {})
        found = table.get(name)
        if found is None:
            found = table[name] = self.store.async_client.register_script(source)
        return found

    def _append_args(
        self,
        conv_id: str,
        messages: Sequence[Mapping[str, Any]],
        tokens: int,
        model: str | None,
        key_id: str | None,
        system_message: str | Mapping[str, Any] | None,
        idempotency_key: str | None,
    ) -> tuple[list[str], list[Any]]:
        keys = self._all_keys(conv_id)
        if isinstance(messages, (str, bytes, Mapping)):
            raise ConversationError("messages must be a sequence of messages, not one message")
        if not isinstance(messages, Sequence):
            raise ConversationError(
                f"messages must be a sequence of messages, got {type(messages).__name__}"
            )
        encoded = [encode_message(m, i) for i, m in enumerate(messages)]
        if not encoded:
            raise ConversationError("a turn needs at least one message")
        check_count("tokens", tokens)
        if isinstance(system_message, str):
            system_message = make_message("system", system_message)
        system = "" if system_message is None else _encode_system(system_message)
        turn_id = (
            uuid.uuid4().hex if idempotency_key is None else check_idempotency_key(idempotency_key)
        )
        args: list[Any] = [self.ttl_seconds, tokens, model or "", key_id or "", turn_id, system]
        return keys, [*args, *encoded]

    # -- sync -------------------------------------------------------------------------

    def append_turn(
        self,
        conv_id: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        tokens: int = 0,
        model: str | None = None,
        key_id: str | None = None,
        system_message: str | Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> int:
        """Append the messages of one turn atomically; return the conversation's length.

        Args:
            conv_id: The conversation.
            messages: In ``message_to_dict`` form, or ``{"role": ..., "content": ...}``.
            tokens: Tokens this turn used (added to ``total_tokens``).
            model: Model that answered (``last_model``).
            key_id: Key that served the turn (``last_key_id``).
            system_message: Stored ahead of the turn only if the conversation is empty
                when the turn lands (decided in Redis): however many processes start
                the conversation together, it is stored once. A string is a system
                message's content.
            idempotency_key: The turn's id (1-256 characters). A turn whose key was
                already stored is not stored again and returns the current length; so
                after a lost acknowledgement, resend with the same key. Default: a new
                random key per call, which makes the driver's own resends safe.

        Raises:
            ConversationError: an argument or message is invalid.
            StoreError: Redis failed.
        """
        keys, args = self._append_args(
            conv_id, messages, tokens, model, key_id, system_message, idempotency_key
        )
        with translate_errors("append_turn", self.store.description):
            length, _ = self._script("append", APPEND)(keys=keys, args=args)
        return int(length)

    def append_message(self, conv_id: str, message: Mapping[str, Any], **kw: Any) -> int:
        """Append one message (a turn of one); see :meth:`append_turn`."""
        return self.append_turn(conv_id, [message], **kw)

    def get_messages(self, conv_id: str, last_n: int | None = None) -> list[dict[str, Any]]:
        """The conversation's messages, oldest first (only the last ``last_n`` if given)."""
        msgs_key, _ = self.keys_for(conv_id)
        start = 0 if last_n is None else -check_count("last_n", last_n)
        if last_n == 0:
            return []
        with translate_errors("get_messages", self.store.description):
            raw = self.store.sync.lrange(msgs_key, start, -1)
        return [decode_message(str(r), conv_id, i) for i, r in enumerate(raw)]

    def get_metadata(self, conv_id: str) -> dict[str, Any] | None:
        """``message_count``, ``total_tokens``, ``turn_count``, ``last_model``,
        ``last_key_id``, ``created_at``, ``updated_at`` (Redis time, epoch seconds) and
        ``ttl_seconds``; ``None`` for an unknown (or expired) conversation."""
        _, meta_key = self.keys_for(conv_id)
        with translate_errors("get_metadata", self.store.description):
            pipe = self.store.sync.pipeline(transaction=False)
            pipe.hgetall(meta_key)
            pipe.ttl(meta_key)
            raw, ttl = pipe.execute()
        return _metadata(raw, int(ttl))

    def truncate(self, conv_id: str, keep_last_n: int) -> int:
        """Keep only the last ``keep_last_n`` messages; return how many were removed."""
        keys = self._all_keys(conv_id)
        keep = check_count("keep_last_n", keep_last_n)
        with translate_errors("truncate", self.store.description):
            return int(self._script("truncate", TRUNCATE)(keys=keys, args=[self.ttl_seconds, keep]))

    def delete(self, conv_id: str) -> bool:
        """Delete the conversation; return whether it existed."""
        keys = self._all_keys(conv_id)
        with translate_errors("delete", self.store.description):
            return bool(self.store.sync.delete(*keys))

    def health_check(self) -> dict[str, Any]:
        """``{"healthy": bool, "store": ..., "error": ...}``; never raises."""
        report: dict[str, Any] = {"store": self.store.kind, "store_url": self.store.description}
        try:
            self.store.sync.ping()
            report["healthy"] = True
        except Exception as exc:  # any driver error: report it
            report["healthy"] = False
            report["error"] = f"{type(exc).__name__}: {exc}"
        return report

    # -- async ------------------------------------------------------------------------

    async def aappend_turn(
        self,
        conv_id: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        tokens: int = 0,
        model: str | None = None,
        key_id: str | None = None,
        system_message: str | Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> int:
        """Async twin of :meth:`append_turn`."""
        keys, args = self._append_args(
            conv_id, messages, tokens, model, key_id, system_message, idempotency_key
        )
        with translate_errors("append_turn", self.store.description):
            length, _ = await self._ascript("append", APPEND)(keys=keys, args=args)
        return int(length)

    async def aappend_message(self, conv_id: str, message: Mapping[str, Any], **kw: Any) -> int:
        """Async twin of :meth:`append_message`."""
        return await self.aappend_turn(conv_id, [message], **kw)

    async def aget_messages(self, conv_id: str, last_n: int | None = None) -> list[dict[str, Any]]:
        """Async twin of :meth:`get_messages`."""
        msgs_key, _ = self.keys_for(conv_id)
        start = 0 if last_n is None else -check_count("last_n", last_n)
        if last_n == 0:
            return []
        with translate_errors("get_messages", self.store.description):
            raw: list[str] = await self.store.async_client.lrange(msgs_key, start, -1)
        return [decode_message(r, conv_id, i) for i, r in enumerate(raw)]

    async def aget_metadata(self, conv_id: str) -> dict[str, Any] | None:
        """Async twin of :meth:`get_metadata`."""
        _, meta_key = self.keys_for(conv_id)
        with translate_errors("get_metadata", self.store.description):
            pipe = self.store.async_client.pipeline(transaction=False)
            pipe.hgetall(meta_key)
            pipe.ttl(meta_key)
            raw, ttl = await pipe.execute()
        return _metadata(raw, int(ttl))

    async def atruncate(self, conv_id: str, keep_last_n: int) -> int:
        """Async twin of :meth:`truncate`."""
        keys = self._all_keys(conv_id)
        keep = check_count("keep_last_n", keep_last_n)
        with translate_errors("truncate", self.store.description):
            script = self._ascript("truncate", TRUNCATE)
            return int(await script(keys=keys, args=[self.ttl_seconds, keep]))

    async def adelete(self, conv_id: str) -> bool:
        """Async twin of :meth:`delete`."""
        keys = self._all_keys(conv_id)
        with translate_errors("delete", self.store.description):
            return bool(await self.store.async_client.delete(*keys))

    async def ahealth_check(self) -> dict[str, Any]:
        """Async twin of :meth:`health_check`."""
        report: dict[str, Any] = {"store": self.store.kind, "store_url": self.store.description}
        try:
            await self.store.async_client.ping()
            report["healthy"] = True
        except Exception as exc:  # any driver error: report it
            report["healthy"] = False
            report["error"] = f"{type(exc).__name__}: {exc}"
        return report

    def close(self) -> None:
        """Close the sync client's connections."""
        self.store.close()

    async def aclose(self) -> None:
        """Close the running loop's async client."""
        await self.store.aclose()


_default: ConversationStore | None = None
_default_lock = threading.Lock()


def get_conversation_store(settings: Settings | None = None, **kwargs: Any) -> ConversationStore:
    """The process's default store; with arguments, a new one that becomes the default."""
    global _default
    with _default_lock:
        if settings is not None or kwargs or _default is None:
            _default = ConversationStore(settings, **kwargs)
        return _default
