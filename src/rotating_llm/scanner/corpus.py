"""Generated corpora for testing and benchmarking the scanner.

:func:`write_positive_corpus` plants random keys of every kind in every file type and
returns where; :func:`write_negative_corpus` writes placeholders and look-alikes that
must not be reported. The keys are random, valid-looking and belong to nobody.
"""

from __future__ import annotations

import json
import random
import string
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["KINDS", "Planted", "make_key", "write_negative_corpus", "write_positive_corpus"]

_ALNUM = string.ascii_letters + string.digits
_URLSAFE = _ALNUM + "-_"
_UPPER = string.ascii_uppercase + string.digits

#: kind -> (detector expected, variable name used in assignments)
KINDS: dict[str, tuple[str, str]] = {
    "google": ("google-api-key", "GEMINI_API_KEY"),
    "openai-project": ("openai-api-key", "OPENAI_API_KEY"),
    "openai-svcacct": ("openai-api-key", "OPENAI_SERVICE_KEY"),
    "openai-admin": ("openai-api-key", "OPENAI_ADMIN_KEY"),
    "openai-legacy": ("openai-api-key", "OPENAI_LEGACY_KEY"),
    "anthropic": ("anthropic-api-key", "ANTHROPIC_API_KEY"),
    "anthropic-admin": ("anthropic-api-key", "ANTHROPIC_ADMIN_KEY"),
    "groq": ("groq-api-key", "GROQ_API_KEY"),
    "huggingface": ("huggingface-token", "HF_TOKEN"),
    "aws-access-key-id": ("aws-access-key-id", "aws_access_key_id"),
    "aws-secret-access-key": ("aws-secret-access-key", "aws_secret_access_key"),
    "generic-token": ("generic-secret", "PAYMENTS_SERVICE_TOKEN"),
    "generic-secret": ("generic-secret", "webhookSecret"),
    "private-key": ("private-key", "PRIVATE_KEY"),
}


def _r(rng: random.Random, n: int, alphabet: str = _ALNUM) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def make_key(kind: str, rng: random.Random) -> str:
    """A random, well-formed secret of ``kind`` (a key of :data:`KINDS`)."""
    makers = {
        "google": lambda: "AIza" + _r(rng, 35, _URLSAFE),
        "openai-project": lambda: "sk-proj-" + _r(rng, 74, _URLSAFE) + "T3BlbkFJ" + _r(rng, 74),
        "openai-svcacct": lambda: "sk-svcacct-" + _r(rng, 74, _URLSAFE) + "T3BlbkFJ" + _r(rng, 74),
        "openai-admin": lambda: "sk-admin-" + _r(rng, 74, _URLSAFE) + "T3BlbkFJ" + _r(rng, 74),
        "openai-legacy": lambda: "sk-" + _r(rng, 20) + "T3BlbkFJ" + _r(rng, 20),
        "anthropic": lambda: "sk-ant-api03-" + _r(rng, 93, _URLSAFE) + "AA",
        "anthropic-admin": lambda: "sk-ant-admin01-" + _r(rng, 93, _URLSAFE) + "AA",
        "groq": lambda: "gsk_" + _r(rng, 52),
        "huggingface": lambda: "hf_" + _r(rng, 34),
        "aws-access-key-id": lambda: rng.choice(["AKIA", "ASIA"]) + _r(rng, 16, _UPPER),
        "aws-secret-access-key": lambda: _r(rng, 40, _ALNUM + "/+"),
        "generic-token": lambda: _r(rng, 40, string.hexdigits.lower()[:16]),
        "generic-secret": lambda: _r(rng, 32, _ALNUM),
        "private-key": lambda: "\n".join(
            ["-----BEGIN RSA PRIVATE KEY-----"]
            + [_r(rng, 64, _ALNUM + "+/") for _ in range(6)]
            + ["-----END RSA PRIVATE KEY-----"]
        ),
    }
    return makers[kind]()


@dataclass(frozen=True)
class Planted:
    """One planted secret: file (relative), 1-based line of its first character, kind, value."""

    file: str
    line: int
    kind: str
    value: str

    @property
    def detector(self) -> str:
        """The detector expected to find it."""
        return KINDS[self.kind][0]


def _one_line(value: str) -> str:
    return value.replace("\n", "\\n")


def _assignments(fmt: str, keys: dict[str, str]) -> list[str]:
    """Lines of a file of type ``fmt`` assigning (or, in prose, mentioning) each key."""
    lines: list[str] = []
    for kind, value in keys.items():
        name = KINDS[kind][1]
        multi = "\n" in value
        if fmt == "py":
            text = f'{name} = """{value}"""' if multi else f'{name} = "{value}"'
        elif fmt == "env":
            text = f'{name}="{_one_line(value)}"' if multi else f"export {name}={value}"
        elif fmt == "yaml":
            indented = "\n".join("  " + v for v in value.splitlines())
            text = f"{name}: |\n{indented}" if multi else f"{name}: {value}"
        elif fmt == "toml":
            text = f"{name} = '''{value}'''" if multi else f'{name} = "{value}"'
        elif kind.startswith("generic"):  # prose: only the name tells
            text = f"Set {name}={value} before the run."
        elif multi:  # md / txt prose
            text = f"Here is the deploy key:\n\n```\n{value}\n```"
        else:
            text = f"Please use {value} for the staging run."
        lines.extend(text.splitlines())
    return lines


def _line_of(text: str, value: str) -> int:
    """1-based line where ``value`` (or its one-line escaped form) starts in ``text``."""
    needle = _one_line(value)[:30]
    index = text.find(needle)
    if index < 0:
        index = text.find(value.splitlines()[0])
    return text.count("\n", 0, index) + 1


def _plant(root: Path, name: str, text: str, keys: dict[str, str]) -> list[Planted]:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return [Planted(name, _line_of(text, v), k, v) for k, v in keys.items()]


def write_positive_corpus(root: Path, seed: int = 7) -> list[Planted]:
    """Plant every kind of key in .py .env .json .yaml .ipynb .md .txt .toml files under ``root``.

    Also a Gemini key in a URL's ``?key=`` and a bare Groq key in prose.
    """
    rng = random.Random(seed)
    planted: list[Planted] = []

    def fresh() -> dict[str, str]:
        return {kind: make_key(kind, rng) for kind in KINDS}

    for fmt in ("py", "env", "yaml", "toml", "md", "txt"):
        keys = fresh()
        name = f"app_{fmt}.{fmt}" if fmt != "env" else ".env"
        text = "# generated\n" + "\n".join(_assignments(fmt, keys)) + "\n"
        planted += _plant(root, name, text, keys)
    keys = fresh()
    doc = {KINDS[k][1]: v for k, v in keys.items()}
    planted += _plant(root, "config.json", json.dumps(doc, indent=2) + "\n", keys)
    keys = fresh()
    source = [f'{KINDS[k][1]} = "{_one_line(v)}"\n' for k, v in keys.items()]
    notebook = {
        "cells": [{"cell_type": "code", "metadata": {}, "source": source, "outputs": []}],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    planted += _plant(root, "analysis.ipynb", json.dumps(notebook, indent=1) + "\n", keys)
    gemini, groq = make_key("google", rng), make_key("groq", rng)
    url = f"https://generativelanguage.googleapis.com/v1beta/models?key={gemini}"
    planted += _plant(
        root, "notes/curl.md", f"Call it like this:\n\n    curl '{url}'\n", {"google": gemini}
    )
    prose = f"ok so the key that works is {groq} and the other one is revoked\n"
    planted += _plant(root, "notes/chat.txt", prose, {"groq": groq})
    return planted


NEGATIVE_LINES = (
    "GEMINI_API_KEY=AIza...your-key...",
    'GEMINI_API_KEY = "AIzaSy-your-api-key-goes-here-000000000"',
    "OPENAI_API_KEY=sk-xxxx",
    "OPENAI_API_KEY=sk-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    'OPENAI_API_KEY="sk-proj-XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"',
    'ANTHROPIC_API_KEY="sk-ant-api03-your-key-here"',
    "ANTHROPIC_API_KEY=sk-ant-api03-...",
    "GROQ_API_KEY=gsk_your_groq_key",
    "GROQ_API_KEY=gsk_0000000000000000000000000000000000000000000000000000",
    "HF_TOKEN=hf_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    'api_key = "your-api-key"',
    "api_key: <your-key>",
    "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
    "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "SECRET_KEY=${SECRET_KEY}",
    'OPENAI_API_KEY = os.environ["OPENAI_API_KEY"]',
    "api_key = settings.vault_secret_path",
    "token = get_token(user_id)",
    "password: ${DB_PASSWORD}",
    "DB_PASSWORD={{ vault_db_password }}",
    'SECRET_TOKEN = "<replace-me-with-a-real-token>"',
    "KEY_ID=gemini-flash-01",
    'PRIMARY_KEY = "tenant_id_user_id_index"',
    'cache_key = "conversation:history:messages"',
    "TOKEN_URL = https://oauth2.googleapis.com/token",
    'commit = "9fceb02d0ae598e95dc970b74767f19372d61af8"',
    'request_id = "3f2c9a1e-8d4b-4c6f-9e7a-1b2c3d4e5f60"',
    'sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"',
    "monkey = 'a8sd7f6a8s7df6a87sdf6'",
    "OPENAI_API_KEY=sk-...",
    'API_KEY = "AIzaSyDUMMYKEY0000000000000000000000000"',
    'auth_token = "changeme-changeme-changeme"',
    "export GEMINI_API_KEY=$GEMINI_API_KEY",
    "Set `GROQ_API_KEY` to your key (it starts with gsk_).",
    "Hugging Face tokens start with hf_ and OpenAI keys with sk-proj-.",
    "-----BEGIN PRIVATE KEY-----",
    "...",
    "-----END PRIVATE KEY-----",
    'allowed = "AIza' + "Q" * 35 + '"',
)


def write_negative_corpus(root: Path) -> int:
    """Write placeholders and look-alikes in several file types; returns how many lines."""
    root.mkdir(parents=True, exist_ok=True)
    body = "\n".join(NEGATIVE_LINES) + "\n"
    for name in ("example.env", "settings.py", "README.md", "values.yaml", "pyproject.toml"):
        (root / name).write_text(body, encoding="utf-8")
    (root / "sample.json").write_text(json.dumps({"lines": NEGATIVE_LINES}, indent=1) + "\n")
    notebook = {"cells": [{"cell_type": "markdown", "source": list(NEGATIVE_LINES)}]}
    (root / "demo.ipynb").write_text(json.dumps(notebook, indent=1) + "\n", encoding="utf-8")
    return len(NEGATIVE_LINES)
