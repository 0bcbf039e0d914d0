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
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import logging
import math
import re
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["CHARS_PER_TOKEN", "count_actual_tokens", "encoding_for", "estimate_tokens"]

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


@lru_cache(maxsize=4)
def _encoding(name: str) -> Any | None:
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


def count_actual_tokens(text: str, model: str = "gemini-2.5-flash") -> int:
    """The number of tokens of ``text`` for ``model``, counted offline.

    A real BPE count when ``tiktoken`` and LiteLLM's bundled vocabulary files are
    installed (exact for OpenAI models, a close stand-in for others); else
    :func:`estimate_tokens`. Special-token strings in ``text`` count as plain text.
    """
    if not text:
        return 0
    with _lock:
        enc = _encoding(encoding_for(model))
    if enc is None:
        return estimate_tokens(text)
    return len(enc.encode(text, disallowed_special=()))
