"""``with_structured_output`` through rotation: each key's provider model shapes the request.

``function_calling`` binds the schema as a tool (LangChain's default); ``json_schema`` and
``json_mode`` record the request, and whichever provider model serves the call turns it
into its own parameters (``response_format``, ``response_json_schema``, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.runnables import (
    Runnable,
    RunnableBinding,
    RunnableMap,
    RunnablePassthrough,
    RunnableSequence,
)
from langchain_core.utils.pydantic import is_basemodel_subclass

from rotating_llm.errors import ConfigError

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel, LanguageModelInput

__all__ = ["STRUCTURED_KWARG", "provider_kwargs", "structured"]

#: The call keyword that carries a json_schema/json_mode request to the provider model.
STRUCTURED_KWARG = "rotating_structured_output"
_METHODS = ("function_calling", "json_schema", "json_mode")


def structured(
    model: BaseChatModel,
    schema: Mapping[str, Any] | type,
    *,
    method: str,
    strict: bool | None,
    include_raw: bool,
) -> Runnable[LanguageModelInput, Any]:
    """The runnable for a ``json_schema``/``json_mode`` structured output on ``model``."""
    if method not in _METHODS:
        raise ConfigError(f"method must be one of {list(_METHODS)}, got {method!r}")
    request = {"schema": schema, "method": method, "strict": strict}
    llm = model.bind(
        **{STRUCTURED_KWARG: request},
        ls_structured_output_format={"kwargs": {"method": method}, "schema": schema},
    )
    parser: Runnable[Any, Any]
    if isinstance(schema, type) and is_basemodel_subclass(schema):
        parser = PydanticOutputParser(pydantic_object=schema)
    else:
        parser = JsonOutputParser()
    if not include_raw:
        return llm | parser
    assign = RunnablePassthrough.assign(
        parsed=itemgetter("raw") | parser, parsing_error=lambda _: None
    )
    none = RunnablePassthrough.assign(parsed=lambda _: None)
    return RunnableMap(raw=llm) | assign.with_fallbacks([none], exception_key="parsing_error")


def _first_binding(runnable: Any) -> RunnableBinding[Any, Any] | None:
    while True:
        if isinstance(runnable, RunnableBinding):
            return runnable
        if isinstance(runnable, RunnableSequence):
            runnable = runnable.first
            continue
        return None


def provider_kwargs(inner: BaseChatModel, request: Mapping[str, Any]) -> dict[str, Any]:
    """The call keywords ``inner`` uses for the structured-output ``request``."""
    extra = {} if request.get("strict") is None else {"strict": request["strict"]}
    runnable = inner.with_structured_output(request["schema"], method=request["method"], **extra)
    binding = _first_binding(runnable)
    if binding is None:
        return {}
    return {k: v for k, v in binding.kwargs.items() if k != "ls_structured_output_format"}
