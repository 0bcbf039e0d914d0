"""Token counts, offline: ``count_actual_tokens`` (the original design's) and ``estimate_tokens``.

``count_actual_tokens`` uses a real BPE (``tiktoken``) whose vocabulary file is read from
disk, never downloaded: LiteLLM's wheel ships ``cl100k_base`` and ``o200k_base`` (the files
are named by the SHA-1 of their download URL, as tiktoken's own cache names them), found
with ``importlib.util.find_spec`` without importing LiteLLM; the file's SHA-256 is checked.
OpenAI models get their own encoding (``o200k_base`` for GPT-4o, GPT-4.1, GPT-5 and the
o-series, ``cl100k_base`` for GPT-4 and GPT-3.5); other models (Gemini, Claude, ...) have
no offline tokenizer, so ``cl100k_base`` stands in: it is within about 10-15% of Gemini's
counts on English text and code. Without ``tiktoken`` or the files, the count falls back
to :func:`estimate_tokens` (``ceil(characters / 4)``, at least one per word).

``estimate_request`` is the one request estimate of every face (LangChain, LiteLLM, the
router): each face converts its messages to :class:`Message` first.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib.util
import json
import logging
import math
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CHARS_PER_TOKEN",
    "DEFAULT_MODEL",
    "MEDIA_TOKENS",
    "MESSAGE_OVERHEAD",
    "Message",
    "aprepare",
    "content_parts",
    "count_actual_tokens",
    "encoding_for",
    "estimate_request",
    "estimate_tokens",
    "extra_text",
    "prepare",
    "tool_call_text",
]

logger = logging.getLogger("rotating_llm.tokens")

#: Characters per token of the heuristic (English text and code average about 4).
CHARS_PER_TOKEN = 4
_WORD = re.compile(r"\S+")

_CL100K_PAT = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
_O200K_PAT = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)

#: encoding -> (file name = sha1 of its URL, sha256 of the content, pattern, special tokens)
_ENCODINGS: dict[str, tuple[str, str, str, dict[str, int]]] = {
    "cl100k_base": (
        "9b5ad71b2ce5302211f9c61530b329a4922fc6a4",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        _CL100K_PAT,
        {
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    ),
    "o200k_base": (
        "fb374d419588a4632f3f557e76b4b70aebbca790",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        _O200K_PAT,
        {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    ),
}

#: The model whose tokenizer counts requests when a face names none.
DEFAULT_MODEL = "gemini-2.5-flash"

_O200K_MODELS = ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")
_lock = threading.Lock()


def estimate_tokens(text: str) -> int:
    """A cheap, conservative token estimate: ``ceil(len / 4)``, at least one per word.

    Returns 0 for an empty string.
    """
    if not text:
        return 0
    return max(math.ceil(len(text) / CHARS_PER_TOKEN), len(_WORD.findall(text)))


def encoding_for(model: str) -> str:
    """The tiktoken encoding used to count ``model``'s tokens (see the module docstring)."""
    name = model.lower().rsplit("/", 1)[-1]
    if name.startswith(_O200K_MODELS):
        return "o200k_base"
    return "cl100k_base"


def _bundled_dir() -> Path | None:
    """LiteLLM's bundled tokenizer directory, found without importing LiteLLM."""
    try:
        spec = importlib.util.find_spec("litellm")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        folder = Path(root) / "litellm_core_utils" / "tokenizers"
        if folder.is_dir():
            return folder
    return None


#: encoding name -> its loaded ``Encoding`` (or ``None``: not available), once loaded.
_loaded: dict[str, Any | None] = {}


def _encoding(name: str) -> Any | None:
    """The tiktoken ``Encoding`` ``name``, loaded once (the lock is taken only to load)."""
    try:
        return _loaded[name]
    except KeyError:
        pass
    with _lock:
        if name not in _loaded:
            _loaded[name] = _load_encoding(name)
        return _loaded[name]


def _load_encoding(name: str) -> Any | None:
    """The tiktoken ``Encoding`` ``name`` from a bundled file, or ``None`` (never downloads)."""
    try:
        import tiktoken
    except ImportError:
        logger.debug("tiktoken is not installed: token counts are estimates")
        return None
    file_name, sha256, pattern, special = _ENCODINGS[name]
    folder = _bundled_dir()
    path = folder / file_name if folder is not None else None
    if path is None or not path.is_file():
        logger.debug("no bundled %s file: token counts are estimates", name)
        return None
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        logger.warning("bundled %s file %s has an unexpected hash: not used", name, path)
        return None
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return tiktoken.Encoding(
        name=name, pat_str=pattern, mergeable_ranks=ranks, special_tokens=special
    )


def prepare(model: str = DEFAULT_MODEL) -> bool:
    """Load the vocabulary that counts ``model``'s tokens now; ``True`` if one is available.

    The first load reads and parses a vocabulary file (about 100 ms); later calls are free.
    """
    return _encoding(encoding_for(model)) is not None


async def aprepare(model: str = DEFAULT_MODEL) -> bool:
    """:func:`prepare` for async callers: the first load runs in a worker thread, never on
    the event loop (once loaded, this returns without leaving the loop)."""
    name = encoding_for(model)
    if name in _loaded:
        return _loaded[name] is not None
    return await asyncio.to_thread(prepare, model)


def count_actual_tokens(text: str, model: str = DEFAULT_MODEL) -> int:
    """The number of tokens of ``text`` for ``model``, counted offline.

    A real BPE count when ``tiktoken`` and LiteLLM's bundled vocabulary files are
    installed (exact for OpenAI models, a close stand-in for others); else
    :func:`estimate_tokens`. Special-token strings in ``text`` count as plain text.
    """
    if not text:
        return 0
    enc = _encoding(encoding_for(model))
    if enc is None:
        return estimate_tokens(text)
    return len(enc.encode(text, disallowed_special=()))


# -- the request estimate: one rule for every face -------------------------------------

#: Tokens charged per message for its role and separators.
MESSAGE_OVERHEAD = 4
#: Tokens charged for one image/audio/video/file block (never its base64 length).
MEDIA_TOKENS = 1100
_MEDIA_TYPES = frozenset({"image", "image_url", "audio", "video", "file", "media", "input_audio"})
#: Request keywords whose JSON counts as prompt (tool schemas, output schemas).
EXTRA_FIELDS = ("tools", "tool_choice", "response_format", "response_json_schema")


@dataclass(frozen=True)
class Message:
    """One message in the neutral form every face converts its messages to.

    Attributes:
        role: The sender (``user``, ``assistant``, ``system``, ``tool``, ...).
        text: All text of the message, tool-call names and arguments included.
        media: Number of image/audio/video/file blocks.
    """

    role: str
    text: str = ""
    media: int = 0


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True, separators=(",", ":"))


def content_parts(content: Any) -> tuple[str, int]:
    """``(text, media blocks)`` of an OpenAI/LangChain-style message content."""
    if content is None:
        return "", 0
    if isinstance(content, str):
        return content, 0
    texts: list[str] = []
    media = 0
    blocks = content if isinstance(content, Sequence) else [content]
    for block in blocks:
        if isinstance(block, str):
            texts.append(block)
        elif isinstance(block, Mapping) and block.get("type") in _MEDIA_TYPES:
            media += 1
        elif isinstance(block, Mapping) and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif block is not None:
            texts.append(_dumps(block))
    return "\n".join(texts), media


def tool_call_text(name: Any, arguments: Any) -> str:
    """The text a tool call counts as: its name and its arguments as compact JSON."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return f"{name}\n{arguments}"
    return f"{name}\n{_dumps(arguments)}"


def extra_text(kwargs: Mapping[str, Any] | None) -> str:
    """The request keywords that count as prompt (:data:`EXTRA_FIELDS`), as JSON."""
    found = [_dumps(kwargs[n]) for n in EXTRA_FIELDS if kwargs and kwargs.get(n) is not None]
    return "\n".join(found)


def estimate_request(
    messages: Sequence[Message],
    max_output_tokens: int = 0,
    *,
    extra: str = "",
    model: str = DEFAULT_MODEL,
) -> int:
    """The token estimate of one request, the same for every face.

    Each message costs :data:`MESSAGE_OVERHEAD` plus its text (:func:`count_actual_tokens`:
    tiktoken when installed, else :func:`estimate_tokens`) plus :data:`MEDIA_TOKENS` per
    media block; ``extra`` (tool and output schemas) counts as text; the request's
    ``max_output_tokens`` is added (providers count it against TPM). At least 1.
    """
    total = sum(
        MESSAGE_OVERHEAD + count_actual_tokens(m.text, model) + MEDIA_TOKENS * max(0, m.media)
        for m in messages
    )
    total += count_actual_tokens(extra, model) if extra else 0
    return max(1, total + max(0, int(max_output_tokens)))
