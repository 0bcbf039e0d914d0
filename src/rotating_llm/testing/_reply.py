"""Deterministic replies: text, tool-call arguments and JSON built from a schema."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Hints", "choose_tool", "reply_text", "split_chunks", "value_for_schema"]

_INT = re.compile(r"-?\d+")
_QUOTED = re.compile(r"""'([^']+)'|"([^"]+)"|“([^”]+)”""")
_WORD_CHUNK = re.compile(r"\s*\S+")


def reply_text(prompt: str) -> str:
    """Return the reply to a prompt: ``"You said: <last user text>"``."""
    prompt = " ".join(prompt.split())
    return f"You said: {prompt}" if prompt else "Hello from the fake provider."


def split_chunks(text: str, words_per_chunk: int = 1) -> list[str]:
    """Split text into stream chunks of whole words (at least one chunk)."""
    words = _WORD_CHUNK.findall(text)
    if not words:
        return [text]
    chunks = [
        "".join(words[i : i + words_per_chunk]) for i in range(0, len(words), words_per_chunk)
    ]
    tail = text[len("".join(words)) :]
    chunks[-1] += tail
    return chunks


class Hints:
    """Values taken from the last user message to fill generated arguments.

    Integers come from the numbers in the text, in order; strings from the first
    quoted phrase, else the text itself.
    """

    def __init__(self, text: str) -> None:
        self.text = " ".join(text.split())
        self._ints = [int(m) for m in _INT.findall(self.text)]
        self._next_int = 0
        quoted = _QUOTED.search(self.text)
        self.string = next((g for g in quoted.groups() if g), "") if quoted else ""
        if not self.string:
            self.string = self.text[:80] or "fake"

    def integer(self) -> int:
        """Return the next number of the text (cycling), else 1."""
        if not self._ints:
            return 1
        value = self._ints[self._next_int % len(self._ints)]
        self._next_int += 1
        return value


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        node: Any = root
        for part in ref[2:].split("/"):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        return node if isinstance(node, dict) else {}
    return schema


def _schema_type(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if str(k).lower() != "null"), "string")
    if kind is None:
        if "properties" in schema:
            return "object"
        if "items" in schema:
            return "array"
        return "string"
    return str(kind).lower()


def value_for_schema(
    schema: Any, hints: Hints, root: dict[str, Any] | None = None, depth: int = 0
) -> Any:
    """Build a value that validates against a JSON schema or a Gemini ``Schema``.

    Every declared property is filled in (optional ones too); ``anyOf`` takes the
    first non-null branch; enums take their first value.
    """
    if not isinstance(schema, dict) or depth > 8:
        return hints.string
    root = schema if root is None else root
    schema = _resolve(schema, root)
    for combo in ("anyOf", "oneOf", "allOf", "any_of"):
        options = schema.get(combo)
        if isinstance(options, list) and options:
            branches = [o for o in options if isinstance(o, dict)]
            typed = [o for o in branches if _schema_type(_resolve(o, root)) != "null"]
            merged = {**schema, **(typed or branches)[0]}
            merged.pop(combo, None)
            return value_for_schema(merged, hints, root, depth + 1)
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    if "const" in schema:
        return schema["const"]
    kind = _schema_type(schema)
    if kind == "object":
        props = schema.get("properties") or {}
        return {
            name: value_for_schema(sub, hints, root, depth + 1)
            for name, sub in props.items()
            if isinstance(name, str)
        }
    if kind == "array":
        return [value_for_schema(schema.get("items") or {}, hints, root, depth + 1)]
    if kind == "integer":
        return _clamp(hints.integer(), schema)
    if kind == "number":
        return float(_clamp(hints.integer(), schema))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return hints.string


def _clamp(value: int, schema: dict[str, Any]) -> int:
    low = schema.get("minimum")
    if isinstance(low, (int, float)) and value < low:
        value = int(low)
    high = schema.get("maximum")
    if isinstance(high, (int, float)) and value > high:
        value = int(high)
    return value


def choose_tool(names: Sequence[str], prompt: str) -> str:
    """Pick the declared tool the prompt names (the longest match), else the first."""
    named = [n for n in names if n and n in prompt]
    if named:
        return max(named, key=len)
    return names[0]


class Plan:
    """What the simulator will answer to one request.

    Attributes:
        model: The model named by the request (echoed back as the model version).
        stream: Whether the reply is streamed.
        input_tokens: Prompt tokens (see :func:`count_tokens`).
        text: Reply text (``None`` for a pure tool-call reply).
        tool_calls: ``(name, arguments)`` pairs.
        finish: ``"stop"``, ``"length"`` or ``"tool_calls"``.
        output_tokens: Reply tokens.
    """

    def __init__(
        self,
        *,
        model: str,
        stream: bool,
        input_tokens: int,
        text: str | None = None,
        tool_calls: list[tuple[str, dict[str, Any]]] | None = None,
        stop: Sequence[str] = (),
        max_tokens: int | None = None,
    ) -> None:
        from rotating_llm.testing._config import CHARS_PER_TOKEN, count_json_tokens, count_tokens

        self.model = model
        self.stream = stream
        self.input_tokens = max(input_tokens, 1)
        self.tool_calls = tool_calls or []
        self.finish = "tool_calls" if self.tool_calls else "stop"
        if text is not None:
            for seq in stop:
                if seq and seq in text:
                    text = text[: text.index(seq)]
            if max_tokens is not None and count_tokens(text) > max_tokens:
                text = text[: max_tokens * CHARS_PER_TOKEN]
                self.finish = "length"
        self.text = text
        out = count_tokens(text or "")
        for name, args in self.tool_calls:
            out += count_tokens(name) + count_json_tokens(args)
        self.output_tokens = out
