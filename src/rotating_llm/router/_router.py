"""``RequestRouter``: the original design's API (``send_chat``, ``send_one_shot``, ...).

A face over the same engine as LangChain's: one ``RotatingChatModel`` per pool (built on
first use, so LangChain is imported only then), conversations in the core
:class:`~rotating_llm.conversation.ConversationStore`. Every send returns a result dict
and never raises for a provider, pool or store failure.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Generator, Mapping, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from rotating_llm.conversation import ConversationStore
from rotating_llm.errors import ConfigError
from rotating_llm.events import add_listener
from rotating_llm.keys import KeyManager, get_key_manager
from rotating_llm.router._dispatch import ainvoke, invoke
from rotating_llm.router._health import health_report
from rotating_llm.router._results import Outcome, failure, success
from rotating_llm.tokens import estimate_tokens

if TYPE_CHECKING:
    from langchain_core.messages import BaseMessage

    from rotating_llm.langchain import RotatingChatModel

__all__ = ["RequestRouter", "get_request_router"]

logger = logging.getLogger("rotating_llm.router")

#: One step of a send for a shell to run: ("history" | "invoke" | "append", its arguments).
_Step = tuple[str, tuple[Any, ...]]

_current: ContextVar[Outcome | None] = ContextVar("rotating_llm_router_outcome", default=None)


def _count_attempts(name: str, fields: dict[str, Any]) -> None:
    """Event listener: every lease granted during a send is one attempt of that send."""
    if name == "lease.acquired":
        outcome = _current.get()
        if outcome is not None:
            outcome.attempts += 1
            outcome.key_id = fields.get("key_id")


def _who(kw: dict[str, Any], user_id: str | None, priority: int | None) -> dict[str, Any]:
    """The call keywords with the send's ``user_id`` as ``tenant`` and its ``priority``
    (checked by the chat model: a bad one is a failed send naming it)."""
    out = dict(kw)
    if user_id is not None:
        out["tenant"] = user_id
    if priority is not None:
        out["priority"] = priority
    return out


class RequestRouter:
    """Send prompts to a model's pool of keys; conversations kept across key rotation.

    Args:
        key_manager: The pools (default: :func:`~rotating_llm.get_key_manager`).
        conversation_store: Default: a store on the key manager's Redis and prefix.
        max_wait: Seconds to wait for capacity (default: the manager's ``max_wait``).
        fallbacks: ``model -> [fallback models]``, tried in order when the model's pool
            has no capacity (``rate_limited``).
        rotation: Rotate over every key of a pool. Default: on, unless
            ``LLM_MULTI_KEY_ROUTER_ENABLED`` is false (then each pool uses its first
            active key, the legacy single-key behaviour).
        default_model: The pool used when a call names none (default: the only pool).
        chat_model_options: Further ``RotatingChatModel`` arguments (``max_attempts``,
            ``timeout``, ``provider_factories``, ...).
    """

    def __init__(
        self,
        key_manager: KeyManager | None = None,
        *,
        conversation_store: ConversationStore | None = None,
        max_wait: float | None = None,
        fallbacks: Mapping[str, Sequence[str]] | None = None,
        rotation: bool | None = None,
        default_model: str | None = None,
        chat_model_options: Mapping[str, Any] | None = None,
    ) -> None:
        if max_wait is not None and max_wait < 0:
            raise ConfigError(f"max_wait must be >= 0, got {max_wait}")
        self.key_manager = key_manager or get_key_manager()
        self.settings = self.key_manager.settings
        self.conversation_store = conversation_store or ConversationStore(
            self.settings, store=self.key_manager.store.primary
        )
        self.max_wait = self.settings.max_wait if max_wait is None else float(max_wait)
        self.fallbacks = {k: list(v) for k, v in (fallbacks or {}).items()}
        self.rotation = self.settings.router_enabled if rotation is None else rotation
        self.default_model = default_model
        self.chat_model_options = dict(chat_model_options or {})
        self._models: dict[str, RotatingChatModel] = {}
        self._lock = threading.Lock()
        add_listener(_count_attempts)

    def __repr__(self) -> str:
        return (
            f"RequestRouter(models={self.key_manager.models()}, rotation={self.rotation}, "
            f"max_wait={self.max_wait}, fallbacks={self.fallbacks})"
        )

    # -- the engine -------------------------------------------------------------------

    def chat_model(self, model: str) -> RotatingChatModel:
        """The pool's ``RotatingChatModel`` (built once per model; imports LangChain).

        Raises:
            ConfigError: ``model`` has no active keys.
        """
        with self._lock:
            found = self._models.get(model)
            if found is None:
                from rotating_llm.router._engine import build_model

                try:
                    found = build_model(
                        self.key_manager, model, rotation=self.rotation, **self.chat_model_options
                    )
                except ValueError as exc:  # pydantic wraps the face's ConfigError
                    raise ConfigError(f"cannot build the chat model of {model!r}: {exc}") from exc
                self._models[model] = found
            return found

    def _preferred(self, model_preference: str | None) -> str:
        if model_preference:
            return model_preference
        if self.default_model:
            return self.default_model
        models = self.key_manager.models()
        if len(models) == 1:
            return models[0]
        raise ConfigError(f"name a model_preference; pools: {models}")

    def _candidates(self, preferred: str, fallback_models: Sequence[str] | None) -> list[str]:
        chain = self.fallbacks.get(preferred, []) if fallback_models is None else fallback_models
        pools = set(self.key_manager.models())
        if preferred not in pools:
            raise ConfigError(f"no active keys for model {preferred!r}; models: {sorted(pools)}")
        out = [preferred]
        for model in chain:
            if model in out:
                continue
            if model not in pools:
                logger.warning("fallback model %s has no active keys: skipped", model)
                continue
            out.append(model)
        return out

    @staticmethod
    def _kwargs(
        expected: int | None, temperature: float | None, wait: float, extra: Mapping[str, Any]
    ) -> dict[str, Any]:
        from rotating_llm.router._engine import COMPLETION_KWARG, MAX_WAIT_KWARG

        call: dict[str, Any] = dict(extra)
        call[MAX_WAIT_KWARG] = wait
        if expected:
            call[COMPLETION_KWARG] = int(expected)
        if temperature is not None:
            call["temperature"] = temperature
        return call

    # -- sends ------------------------------------------------------------------------

    def _prepare(
        self,
        model_preference: str | None,
        fallback_models: Sequence[str] | None,
        expected: int | None,
        temperature: float | None,
        max_wait: float | None,
        extra: Mapping[str, Any],
    ) -> tuple[Outcome, list[str], dict[str, Any]]:
        preferred = self._preferred(model_preference)
        outcome = Outcome(preferred, preferred)
        wait = self.max_wait if max_wait is None else float(max_wait)
        call = self._kwargs(expected, temperature, wait, extra)
        return outcome, self._candidates(preferred, fallback_models), call

    def _failed(self, outcome: Outcome, exc: BaseException, **extra: Any) -> dict[str, Any]:
        result = failure(outcome, exc, **extra)
        if result["error_type"] == "provider_error" and not hasattr(exc, "kind"):
            logger.exception("unexpected error in a send on %s", outcome.model)
        else:
            logger.warning(
                "send on %s failed (%s): %s", outcome.model, result["error_type"], result["error"]
            )
        return result

    def _succeeded(
        self, outcome: Outcome, reply: BaseMessage, prompt_text: str
    ) -> tuple[dict[str, Any], int]:
        from rotating_llm.router._engine import reply_parts

        text, usage, key_id, attempts = reply_parts(reply)
        outcome.key_id = key_id or outcome.key_id
        outcome.attempts = max(outcome.attempts, attempts)
        if usage is None:
            prompt, completion = estimate_tokens(prompt_text), estimate_tokens(text)
            usage = {"prompt": prompt, "completion": completion, "total": prompt + completion}
        held = reply.response_metadata.get("affinity_held")
        extra = {} if held is None else {"affinity_held": bool(held)}
        return success(outcome, text, usage, **extra), usage["total"]

    def _send(
        self,
        conv_id: str | None,
        prompt: str,
        system_prompt: str | None,
        prepare: tuple[Any, ...],
    ) -> Generator[_Step, Any, dict[str, Any]]:
        """The one send, sans I/O: yields each store or provider step for a shell to run.

        ``conv_id`` None: a one-shot send (no history read, no turn written); else, with
        the ``sticky_keys`` setting on, the conversation's last key is preferred (the
        lease's affinity). The shells (:meth:`_run`, :meth:`_arun`) send back each step's
        result or throw its error in.
        """
        from rotating_llm.router._engine import AFFINITY_KWARG, build_messages, turn_dicts

        token = _current.set(None)
        try:
            outcome, candidates, call = self._prepare(*prepare)
        except Exception as exc:
            _current.reset(token)
            model = str(prepare[0])
            return self._failed(Outcome(model, model), exc)
        _current.set(outcome)
        if conv_id is not None and self.settings.sticky_keys:
            call.setdefault(AFFINITY_KWARG, conv_id)
        try:
            history = [] if conv_id is None else (yield ("history", (conv_id,)))
            messages = build_messages(history, prompt, system_prompt)
            reply = yield ("invoke", (outcome, messages, candidates, call))
            result, total = self._succeeded(outcome, reply, (system_prompt or "") + prompt)
        except Exception as exc:
            return self._failed(outcome, exc)
        finally:
            _current.reset(token)
        if conv_id is None:
            return result
        try:
            info: dict[str, Any] = {"tokens": total, "model": outcome.model}
            info.update(key_id=result["key_id"], system_message=system_prompt)
            yield ("append", (conv_id, turn_dicts(prompt, reply), info))
        except Exception as exc:
            return self._failed(outcome, exc, content=result["content"])
        return result

    def _run(self, flow: Generator[_Step, Any, dict[str, Any]]) -> dict[str, Any]:
        """Drive :meth:`_send` with blocking calls."""
        store = self.conversation_store
        try:
            step = next(flow)
            while True:
                name, args = step
                try:
                    if name == "history":
                        value: Any = store.get_messages(*args)
                    elif name == "invoke":
                        value = invoke(self.chat_model, *args)
                    else:
                        value = store.append_turn(args[0], args[1], **args[2])
                except BaseException as exc:  # the flow decides; KeyboardInterrupt passes
                    step = flow.throw(exc)
                else:
                    step = flow.send(value)
        except StopIteration as done:
            result: dict[str, Any] = done.value
            return result

    async def _arun(self, flow: Generator[_Step, Any, dict[str, Any]]) -> dict[str, Any]:
        """Drive :meth:`_send` on the event loop (the async twin of :meth:`_run`)."""
        store = self.conversation_store
        try:
            step = next(flow)
            while True:
                name, args = step
                try:
                    if name == "history":
                        value: Any = await store.aget_messages(*args)
                    elif name == "invoke":
                        value = await ainvoke(self.chat_model, *args)
                    else:
                        value = await store.aappend_turn(args[0], args[1], **args[2])
                except BaseException as exc:  # cancellation passes through the flow
                    step = flow.throw(exc)
                else:
                    step = flow.send(value)
        except StopIteration as done:
            result: dict[str, Any] = done.value
            return result

    def send_one_shot(
        self,
        prompt: str,
        model_preference: str | None = None,
        expected_completion_tokens: int | None = None,
        temperature: float | None = None,
        system_prompt: str | None = None,
        *,
        fallback_models: Sequence[str] | None = None,
        max_wait: float | None = None,
        user_id: str | None = None,
        priority: int | None = None,
        **kw: Any,
    ) -> dict[str, Any]:
        """Send one prompt without history; return the result dict (never raises for a
        provider, pool or store failure). ``kw`` goes to the provider call (e.g. ``stop``).

        ``user_id`` is the lease's ``tenant`` (per-tenant fair share: the pool's tenant
        caps apply to it), ``priority`` its priority (-1000..1000, higher first).
        """
        prepare = (model_preference, fallback_models, expected_completion_tokens,
                   temperature, max_wait, _who(kw, user_id, priority))  # fmt: skip
        return self._run(self._send(None, prompt, system_prompt, prepare))

    def send_chat(
        self,
        conv_id: str,
        prompt: str,
        model_preference: str | None = None,
        expected_completion_tokens: int | None = None,
        system_prompt: str | None = None,
        temperature: float | None = None,
        *,
        fallback_models: Sequence[str] | None = None,
        max_wait: float | None = None,
        user_id: str | None = None,
        priority: int | None = None,
        **kw: Any,
    ) -> dict[str, Any]:
        """Send ``prompt`` with conversation ``conv_id``'s history; on success append the
        turn (prompt and reply, one atomic write). A failed send writes nothing.

        ``user_id`` and ``priority``: as in :meth:`send_one_shot`. A ``system_prompt`` is
        stored with the first turn of a new conversation (once,
        however many processes start it together: Redis decides); given later, it
        replaces the stored one for that call.
        """
        prepare = (model_preference, fallback_models, expected_completion_tokens,
                   temperature, max_wait, _who(kw, user_id, priority))  # fmt: skip
        return self._run(self._send(conv_id, prompt, system_prompt, prepare))

    async def asend_one_shot(
        self,
        prompt: str,
        model_preference: str | None = None,
        expected_completion_tokens: int | None = None,
        temperature: float | None = None,
        system_prompt: str | None = None,
        *,
        fallback_models: Sequence[str] | None = None,
        max_wait: float | None = None,
        user_id: str | None = None,
        priority: int | None = None,
        **kw: Any,
    ) -> dict[str, Any]:
        """Async twin of :meth:`send_one_shot`."""
        prepare = (model_preference, fallback_models, expected_completion_tokens,
                   temperature, max_wait, _who(kw, user_id, priority))  # fmt: skip
        return await self._arun(self._send(None, prompt, system_prompt, prepare))

    async def asend_chat(
        self,
        conv_id: str,
        prompt: str,
        model_preference: str | None = None,
        expected_completion_tokens: int | None = None,
        system_prompt: str | None = None,
        temperature: float | None = None,
        *,
        fallback_models: Sequence[str] | None = None,
        max_wait: float | None = None,
        user_id: str | None = None,
        priority: int | None = None,
        **kw: Any,
    ) -> dict[str, Any]:
        """Async twin of :meth:`send_chat`."""
        prepare = (model_preference, fallback_models, expected_completion_tokens,
                   temperature, max_wait, _who(kw, user_id, priority))  # fmt: skip
        return await self._arun(self._send(conv_id, prompt, system_prompt, prepare))

    # -- conversations and health -----------------------------------------------------

    def truncate_conversation(self, conv_id: str, keep_last_n: int) -> int:
        """Keep the last ``keep_last_n`` messages of ``conv_id``; return how many went."""
        return self.conversation_store.truncate(conv_id, keep_last_n)

    def get_conversation(self, conv_id: str) -> list[dict[str, Any]]:
        """The stored messages of ``conv_id`` (LangChain ``message_to_dict`` form)."""
        return self.conversation_store.get_messages(conv_id)

    def health_check(self) -> dict[str, Any]:
        """``healthy``, ``key_manager``, ``conversation_store``, ``redis``; never raises."""
        return health_report(self.key_manager, self.conversation_store, self.rotation)

    async def aclose(self) -> None:
        """Close the running loop's async connections (conversation store and manager)."""
        await self.conversation_store.aclose()
        await self.key_manager.store.primary.aclose()


_default: RequestRouter | None = None
_default_lock = threading.Lock()


def get_request_router(
    key_manager: KeyManager | None = None, max_wait: float | None = None, **kwargs: Any
) -> RequestRouter:
    """The process's default router; with arguments, a new one that becomes the default.

    Arguments are those of :class:`RequestRouter`.
    """
    global _default
    with _default_lock:
        fresh = key_manager is not None or max_wait is not None or bool(kwargs)
        if fresh or _default is None or _default.key_manager is not get_key_manager():
            _default = RequestRouter(key_manager, max_wait=max_wait, **kwargs)
        return _default


def _reset_default() -> None:
    """Forget the default router (tests)."""
    global _default
    with _default_lock:
        _default = None
