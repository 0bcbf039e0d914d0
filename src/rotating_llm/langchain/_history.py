"""``RedisChatMessageHistory``: LangChain chat history over the core's conversation store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import BaseMessage, message_to_dict, messages_from_dict

from rotating_llm.config import Settings
from rotating_llm.conversation import ConversationStore, make_message
from rotating_llm.errors import ConversationError

__all__ = ["RedisChatMessageHistory"]


def _check_session_id(session_id: object) -> None:
    """Refuse an id the store cannot hold, naming ``session_id`` (not the store's name)."""
    try:
        ConversationStore.check_id(session_id)
    except ConversationError as exc:
        raise ConversationError(str(exc).replace("conv_id", "session_id")) from None


def _turn_info(messages: Sequence[BaseMessage]) -> dict[str, Any]:
    tokens = 0
    model: str | None = None
    key_id: str | None = None
    for msg in messages:
        usage = getattr(msg, "usage_metadata", None)
        if usage:
            tokens += int(usage.get("total_tokens") or 0)
        meta = msg.response_metadata or {}
        model = meta.get("model_name") or meta.get("pool") or model
        key_id = meta.get("key_id") or key_id
    return {"tokens": tokens, "model": model, "key_id": key_id}


class RedisChatMessageHistory(BaseChatMessageHistory):
    """A conversation in Redis (plain Redis, no modules), shared with every face.

    Messages are stored in LangChain's ``message_to_dict`` form by the core's
    :class:`~rotating_llm.conversation.ConversationStore`: ``add_messages`` appends them
    as one atomic turn, which also records the tokens, model and key of any AI message.
    Works with ``RunnableWithMessageHistory``.

    Under contention, Redis decides: ``system_message`` is stored ahead of the first turn
    that lands in an empty conversation, once however many processes open it together
    (instead of ``if not history.messages: history.add_message(system)``, which stores
    it once per process that read the conversation empty); and ``add_messages(...,
    idempotency_key=...)`` resent after a lost acknowledgement stores the turn once.

    Args:
        session_id: The conversation id (no ``{``/``}``).
        redis_url: Redis URL (default: ``REDIS_URL``; unset: the embedded store).
        key_prefix: Key prefix (default: the settings').
        ttl: Conversation TTL in seconds, refreshed on every write (default:
            ``CONVERSATION_TTL_SECONDS``); the name langchain-redis uses.
        ttl_seconds: The same, under this library's earlier name.
        store: A :class:`ConversationStore` to use instead of building one.
        settings: Settings for a store built here.
        system_message: A system prompt (a string or a ``SystemMessage``) for a new
            conversation, stored with its first turn (see above).

    Raises:
        ConversationError: ``session_id`` is not a usable id (also a ``ValueError``, as
            langchain-redis raises).
    """

    def __init__(
        self,
        session_id: str,
        redis_url: str | None = None,
        *,
        key_prefix: str | None = None,
        ttl: int | None = None,
        ttl_seconds: int | None = None,
        store: ConversationStore | None = None,
        settings: Settings | None = None,
        system_message: str | BaseMessage | None = None,
    ) -> None:
        _check_session_id(session_id)
        if isinstance(system_message, BaseMessage):
            self._system: dict[str, Any] | None = message_to_dict(system_message)
        elif isinstance(system_message, str) or system_message is None:
            self._system = (
                None if system_message is None else make_message("system", system_message)
            )
        else:
            raise ConversationError(
                f"system_message must be a string or a message, got {type(system_message).__name__}"
            )
        if ttl is not None and ttl_seconds is not None and ttl != ttl_seconds:
            raise ConversationError("give ttl or ttl_seconds, not both")
        ttl_seconds = ttl if ttl is not None else ttl_seconds
        if store is None:
            overrides: dict[str, Any] = {"redis_url": redis_url, "key_prefix": key_prefix}
            if settings is None:
                settings = Settings.from_env(**overrides)
            else:
                settings = settings.model_copy(
                    update={k: v for k, v in overrides.items() if v is not None}
                )
            store = ConversationStore(settings, ttl_seconds=ttl_seconds)
        self.session_id = session_id
        self.store = store

    @property
    def id(self) -> str:
        """The session id (as langchain-redis names it)."""
        return self.session_id

    def __len__(self) -> int:
        """Number of messages stored for this session (one Redis call)."""
        meta = self.store.get_metadata(self.session_id)
        return int(meta["message_count"]) if meta else 0

    def __repr__(self) -> str:
        return f"RedisChatMessageHistory(session_id={self.session_id!r}, store={self.store!r})"

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """Every message of the conversation, oldest first."""
        return messages_from_dict(self.store.get_messages(self.session_id))

    async def aget_messages(self) -> list[BaseMessage]:
        """Async read of every message."""
        return messages_from_dict(await self.store.aget_messages(self.session_id))

    def _turn(self, messages: Sequence[BaseMessage], idempotency_key: str | None) -> dict[str, Any]:
        info = _turn_info(messages)
        info.update(system_message=self._system, idempotency_key=idempotency_key)
        return info

    def add_messages(
        self, messages: Sequence[BaseMessage], *, idempotency_key: str | None = None
    ) -> None:
        """Append ``messages`` as one atomic turn.

        Args:
            messages: The turn's messages.
            idempotency_key: The turn's id: a turn resent with a key already stored
                (its acknowledgement was lost) is not stored again. Default: a new one.
        """
        if not messages:
            return
        dicts = [message_to_dict(m) for m in messages]
        self.store.append_turn(self.session_id, dicts, **self._turn(messages, idempotency_key))

    async def aadd_messages(
        self, messages: Sequence[BaseMessage], *, idempotency_key: str | None = None
    ) -> None:
        """Async twin of :meth:`add_messages`."""
        if not messages:
            return
        dicts = [message_to_dict(m) for m in messages]
        info = self._turn(messages, idempotency_key)
        await self.store.aappend_turn(self.session_id, dicts, **info)

    def clear(self) -> None:
        """Delete the conversation."""
        self.store.delete(self.session_id)

    async def aclear(self) -> None:
        """Async twin of :meth:`clear`."""
        await self.store.adelete(self.session_id)

    def get_metadata(self) -> dict[str, Any] | None:
        """The conversation's metadata (see ``ConversationStore.get_metadata``)."""
        return self.store.get_metadata(self.session_id)

    def truncate(self, keep_last_n: int) -> int:
        """Keep only the last ``keep_last_n`` messages; return how many were removed."""
        return self.store.truncate(self.session_id, keep_last_n)
