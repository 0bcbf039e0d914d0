"""One call's own keywords: read (and taken out) before anything reaches a provider.

``model`` (another pool), ``max_wait`` (seconds to wait for capacity on this call),
``expected_completion_tokens`` (reserved without capping the reply), ``affinity`` (a
conversation id: its key is preferred, see ``sticky_keys``), ``priority`` (-1000..1000,
higher first) and ``tenant`` (whose request it is, for per-tenant fair shares). A call's
keyword wins over the model's field of the same name; ``bind()`` passes them as call
keywords too, so a bound model inside ``RunnableWithMessageHistory`` carries them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.messages import BaseMessage

from rotating_llm._bounds import check_priority, check_tenant
from rotating_llm.errors import ConfigError
from rotating_llm.langchain._rotation import Attempts, conversation_id, estimate_tokens

if TYPE_CHECKING:
    from rotating_llm.langchain._chat_model import RotatingChatModel

__all__ = ["call_attempts"]

#: Keywords LangChain adds to a call that no provider model takes.
_PRIVATE_KWARGS = ("ls_structured_output_format",)


def _wait(llm: RotatingChatModel, wait: Any) -> float:
    if wait is None:
        return float(llm.manager.settings.max_wait if llm.max_wait is None else llm.max_wait)
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not wait >= 0:
        raise ConfigError(f"max_wait must be a number of seconds >= 0, got {wait!r}")
    return float(wait)


def _affinity(llm: RotatingChatModel, affinity: Any) -> str | None:
    if affinity is None:
        affinity = llm.affinity
    sticky = llm.sticky_keys
    if sticky is None:
        sticky = llm.manager.settings.sticky_keys
    if affinity is None and sticky:
        affinity = conversation_id()
    return affinity  # type: ignore[no-any-return]  # checked by the acquire


def call_attempts(
    llm: RotatingChatModel, messages: Sequence[BaseMessage], kwargs: dict[str, Any]
) -> Attempts:
    """The attempts of one call of ``llm``; its own keywords are popped from ``kwargs``.

    Raises:
        ConfigError: a bad ``max_wait``, ``expected_completion_tokens``, ``priority`` or
            ``tenant``.
    """
    pool = str(kwargs.pop("model", None) or llm.model)
    affinity = _affinity(llm, kwargs.pop("affinity", None))
    priority = kwargs.pop("priority", None)
    priority = llm.priority if priority is None else check_priority(priority, ConfigError)
    tenant = kwargs.pop("tenant", None)
    tenant = llm.tenant if tenant is None else check_tenant(tenant, ConfigError)
    for name in _PRIVATE_KWARGS:
        kwargs.pop(name, None)
    wait = _wait(llm, kwargs.pop("max_wait", None))
    expected = kwargs.pop("expected_completion_tokens", None)
    if expected is not None and (
        isinstance(expected, bool) or not isinstance(expected, int) or expected < 0
    ):
        raise ConfigError(f"expected_completion_tokens must be an int >= 0, got {expected!r}")
    completion = kwargs.get("max_tokens") or llm.max_tokens or 0
    return Attempts(
        pool=pool,
        estimated_tokens=estimate_tokens(messages, kwargs, int(completion)) + (expected or 0),
        max_attempts=llm.max_attempts,
        max_wait=wait,
        backoff_base=llm.backoff_base,
        backoff_max=llm.backoff_max,
        affinity=affinity,
        priority=priority,
        tenant=tenant,
    )
