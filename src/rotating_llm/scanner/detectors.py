"""Secret detectors: provider key formats, private key blocks, high-entropy assignments.

Every detector is a regular expression plus checks that drop placeholders and documented
examples (``sk-xxxx``, ``your-api-key``, ``AKIAIOSFODNN7EXAMPLE``, ``${VAR}``).
"""

from __future__ import annotations

import hashlib
import math
import re
from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "DETECTORS",
    "Detector",
    "RawMatch",
    "find_secrets",
    "fingerprint",
    "is_placeholder",
    "redact_value",
    "shannon_entropy",
]

#: Markers that allow a finding on their line (or, for ``*-next-line``, on the next line).
ALLOW_MARKERS = ("rotating-llm: allow-secret", "pragma: allowlist secret", "gitleaks:allow")
ALLOW_NEXT_MARKERS = ("rotating-llm: allow-secret-next-line", "pragma: allowlist nextline secret")

_PLACEHOLDER_WORDS = (
    "example",
    "xxxx",
    "placeholder",
    "dummy",
    "sample",
    "redacted",
    "changeme",
    "change_me",
    "change-me",
    "abcdef",
    "123456",
    "000000",
    "...",
    "\u2026",
    "***",
    "${",
    "{{",
    "%(",
    "<",
    ">",
)
#: Short words that mark a placeholder only in a value that is not long and random: a real
#: key of 32+ random characters contains "fake" or "test" by chance often enough to matter.
_SHORT_PLACEHOLDER_WORDS = ("your", "fake", "test", "replace", "insert")


def shannon_entropy(value: str) -> float:
    """Bits per character of ``value`` (0 for an empty string)."""
    if not value:
        return 0.0
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


def _has_word(body: str, words: tuple[str, ...]) -> bool:
    """Whether ``body`` holds one of ``words`` as people write them (lower, UPPER or
    Capitalized): random characters spell "xXxX" or "tESt" by chance, people do not."""
    return any(w in body or w.upper() in body or w.capitalize() in body for w in words)


def is_placeholder(body: str) -> bool:
    """Whether ``body`` (a value without its fixed prefix) is a placeholder or doc example."""
    if _has_word(body, _PLACEHOLDER_WORDS):
        return True
    core = re.sub(r"[^A-Za-z0-9]", "", body)
    if len(set(core)) <= 3:
        return True
    random_looking = len(core) >= 32 and shannon_entropy(core) >= 4.5
    return not random_looking and _has_word(body, _SHORT_PLACEHOLDER_WORDS)


def fingerprint(detector: str, value: str) -> str:
    """A stable, one-way id of a finding's value (for baselines); never the value."""
    return hashlib.sha256(f"{detector}:{value}".encode()).hexdigest()[:20]


def redact_value(value: str, prefix_len: int = 4) -> str:
    """``value`` with all but its fixed prefix (and, if long, last two chars) masked."""
    keep = max(0, min(prefix_len, len(value) // 3))
    tail = value[-2:] if len(value) >= 24 else ""
    return f"{value[:keep]}…{tail} ({len(value)} chars)"


@dataclass(frozen=True)
class Detector:
    """One kind of secret.

    Attributes:
        name: the detector id shown in reports (``openai-api-key``).
        description: one line for SARIF rules and help.
        pattern: the regular expression; group ``value`` (or the whole match) is the secret.
        prefixes: fixed literal prefixes, shown unredacted and skipped by placeholder checks.
        min_entropy: minimum Shannon entropy of the value after the prefix.
        check: an extra predicate on (value, match); ``False`` drops the match.
    """

    name: str
    description: str
    pattern: re.Pattern[str]
    prefixes: tuple[str, ...] = ()
    min_entropy: float = 3.0
    check: Callable[[str, re.Match[str]], bool] | None = None

    def value_of(self, match: re.Match[str]) -> tuple[str, int, int]:
        """The secret text of ``match`` and its span."""
        if "value" in self.pattern.groupindex:
            return match.group("value"), match.start("value"), match.end("value")
        return match.group(0), match.start(), match.end()

    def prefix_len(self, value: str) -> int:
        """Length of the longest known prefix ``value`` starts with."""
        return max((len(p) for p in self.prefixes if value.startswith(p)), default=0)

    def accepts(self, value: str, match: re.Match[str]) -> bool:
        """Whether ``value`` is a real-looking secret rather than a placeholder."""
        body = value[self.prefix_len(value) :]
        if body and (is_placeholder(body) or shannon_entropy(body) < self.min_entropy):
            return False
        return self.check is None or self.check(value, match)


#: Google API keys published as examples in Firebase's SDKs (gitleaks allowlists them too).
FIREBASE_EXAMPLE_KEYS = frozenset(
    {
        "AIzaSyabcdefghijklmnopqrstuvwxyz1234567",
        "AIzaSyAnLA7NfeLquW1tJFpx_eQCxoX-oo6YyIs",
        "AIzaSyCkEhVjf3pduRDt6d1yKOMitrUEke8agEM",
        "AIzaSyDMAScliyLx7F0NPDEJi1QmyCgHIAODrlU",
        "AIzaSyD3asb-2pEZVqMkmL6M9N6nHZRR_znhrh0",
        "AIzayDNSXIbFmlXbIE6mCzDLQAqITYefhixbX4A",
        "AIzaSyAdOS2zB6NCsk1pCdZ4-P6GBdi_UUPwX7c",
        "AIzaSyASWm6HmTMdYWpgMnjRBjxcQ9CKctWmLd4",
        "AIzaSyANUvH9H9BsUccjsu2pCmEkOPjjaXeDQgY",
        "AIzaSyA5_iVawFQ8ABuTZNUdcwERLJv_a_p4wtM",
        "AIzaSyA4UrcGxgwQFTfaI3no3t7Lt1sjmdnP5sQ",
        "AIzaSyDSb51JiIcB6OJpwwMicseKRhhrOq1cS7g",
        "AIzaSyBF2RrAIm4a0mO64EShQfqfd2AFnzAvvuU",
        "AIzaSyBcE-OOIbhjyR83gm4r2MFCu4MJmprNXsw",
        "AIzaSyB8qGxt4ec15vitgn44duC5ucxaOi4FmqE",
        "AIzaSyA8vmApnrHNFE0bApF4hoZ11srVL_n0nvY",
    }
)
#: How far (characters, either side) an Azure OpenAI endpoint may stand from its key.
AZURE_NEARBY = 400
_AZURE_HOSTS = (".openai.azure.com", ".cognitiveservices.azure.com", ".services.ai.azure.com")


def _beside_azure_endpoint(value: str, match: re.Match[str]) -> bool:
    """A bare 32-hex or 84-character value is an Azure key only near an Azure endpoint."""
    text = match.string
    near = text[max(0, match.start() - AZURE_NEARBY) : match.end() + AZURE_NEARBY].lower()
    return any(host in near for host in _AZURE_HOSTS)


_B = r"(?<![A-Za-z0-9_\-])"  # no token character before
_E = r"(?![A-Za-z0-9_\-])"  # no token character after

_NOT_SECRET_NAME = re.compile(r"public|primary|foreign|csrf|xsrf|sort|cache|lookup", re.I)
_GENERIC_NAME = re.compile(
    r"(?:api[_\-]?key|key|secret|token|password|passwd|pwd|credentials?|auth)$", re.IGNORECASE
)


def _private_key_body(value: str, match: re.Match[str]) -> bool:
    """A BEGIN line counts only if base64 key material follows it."""
    text = match.string
    tail = text[match.end() : match.end() + 400].replace("\\n", "\n").replace("\\r", "")
    body = re.split(r"-----END", tail, maxsplit=1)[0]
    material = re.sub(r"[^A-Za-z0-9+/=]", "", body)
    return len(material) >= 40 and not is_placeholder(material) and len(set(material)) > 10


# Unambiguous (each repetition starts with a capital or a separator): linear, no backtracking.
_WORDS = re.compile(r"[A-Za-z][a-z]+(?:[A-Z][a-z]+|[_\-.:/][A-Za-z][a-z]+)*[_\-.:/]?")


def _generic_check(value: str, match: re.Match[str]) -> bool:
    name = match.group("name").rstrip(".-")
    if _NOT_SECRET_NAME.search(name):
        return False  # public_key, publicToken, primaryKey, foreignKey, csrf_token
    word = _GENERIC_NAME.search(name)
    if word is None:
        return False
    start = word.start()
    camel = name[start].isupper() and start > 0 and name[start - 1].islower()
    if start > 0 and name[start - 1] not in "_.-" and not camel:
        return False  # "monkey", "turkey"
    if value.startswith(("$", "%", "/", "./", "~")) or "://" in value:
        return False
    if value in FIREBASE_EXAMPLE_KEYS:
        return False  # a published example, whatever name it is assigned to
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+", value):
        return False  # a dotted identifier: settings.api_key, os.environ.get
    classes = sum(
        bool(re.search(p, value)) for p in (r"[a-z]", r"[A-Z]", r"[0-9]", r"[^A-Za-z0-9]")
    )
    if classes < 2:
        return False
    if not re.search(r"[0-9]", value) and (
        len(value) < 24
        or not (re.search(r"[a-z]", value) and re.search(r"[A-Z]", value))
        or _WORDS.fullmatch(value)
    ):
        return False  # letters only: words, CamelCase, kebab-case identifiers
    if len(value) >= 32 and re.fullmatch(r"[0-9a-f]+|[0-9A-F]+", value):
        return shannon_entropy(value) >= 3.0  # hex tokens: at most 4 bits per char
    return shannon_entropy(value) >= (3.5 if len(value) >= 20 else 3.8)


_TOKEN = r"[A-Za-z0-9_\-]"

DETECTORS: tuple[Detector, ...] = (
    Detector(
        "private-key",
        "A PEM private key block",
        re.compile(r"-----BEGIN (?:[A-Z0-9]{1,20} ){0,4}PRIVATE KEY(?: BLOCK)?-----"),
        prefixes=("-----BEGIN",),
        min_entropy=0.0,
        check=_private_key_body,
    ),
    Detector(
        "anthropic-api-key",
        "An Anthropic API or admin key (sk-ant-api03-, sk-ant-admin01-)",
        re.compile(_B + r"sk-ant-(?:api\d\d|admin\d\d)-" + _TOKEN + r"{32,}" + _E),
        prefixes=("sk-ant-api03-", "sk-ant-admin01-"),
    ),
    Detector(
        "openai-api-key",
        "An OpenAI key (sk-proj-, sk-svcacct-, sk-admin-, legacy sk-)",
        re.compile(
            _B
            + r"(?:sk-(?:proj|svcacct|admin|None)-"
            + _TOKEN
            + r"{32,}|sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20})"
            + _E
        ),
        prefixes=("sk-", "sk-proj-", "sk-svcacct-", "sk-admin-", "sk-None-"),
        check=lambda value, _m: "T3BlbkFJ" in value,  # OpenAI's marker; look-alikes lack it
    ),
    Detector(
        "google-api-key",
        "A Google / Gemini API key (AIza...)",
        re.compile(_B + r"AIza[0-9A-Za-z_\-]{35}" + _E),
        prefixes=("AIza",),
        check=lambda value, _m: value not in FIREBASE_EXAMPLE_KEYS,
    ),
    Detector(
        "azure-openai-key",
        "An Azure OpenAI key (32 hex or 84 characters) beside an Azure OpenAI endpoint",
        re.compile(_B + r"(?:[0-9a-f]{32}|[0-9A-Za-z]{84})" + _E),
        check=_beside_azure_endpoint,
    ),
    Detector(
        "groq-api-key",
        "A Groq API key (gsk_)",
        re.compile(_B + r"gsk_[A-Za-z0-9]{40,64}" + _E),
        prefixes=("gsk_",),
    ),
    Detector(
        "huggingface-token",
        "A Hugging Face access token (hf_)",
        re.compile(_B + r"(?:hf_[A-Za-z0-9]{30,40}|api_org_[A-Za-z0-9]{30,40})" + _E),
        prefixes=("hf_", "api_org_"),
    ),
    Detector(
        "aws-access-key-id",
        "An AWS access key id (AKIA..., ASIA...)",
        re.compile(
            r"(?<![A-Za-z0-9])(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Za-z0-9])"
        ),
        prefixes=("AKIA", "ASIA", "ABIA", "ACCA", "A3T"),
        min_entropy=2.5,
    ),
    Detector(
        "aws-bedrock-api-key",
        "An Amazon Bedrock API key (ABSK..., AWS_BEARER_TOKEN_BEDROCK)",
        re.compile(r"(?<![A-Za-z0-9+/])ABSK[A-Za-z0-9+/]{60,400}={0,2}(?![A-Za-z0-9+/=])"),
        prefixes=("ABSK",),
    ),
    Detector(
        "github-token",
        "A GitHub token (ghp_, gho_, ghu_, ghs_, ghr_, github_pat_)",
        re.compile(_B + r"(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{82})" + _E),
        prefixes=("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    ),
    Detector(
        "slack-token",
        "A Slack token (xoxb-, xoxp-, xoxa-, xoxr-, xoxs-, xapp-)",
        re.compile(_B + r"(?:xox[baprs]-|xapp-)[0-9A-Za-z\-]{20,250}" + _E),
        prefixes=("xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-", "xapp-"),
    ),
    Detector(
        "slack-webhook",
        "A Slack incoming webhook URL",
        re.compile(
            r"hooks\.slack\.com/(?:services|workflows|triggers)/"
            r"(?P<value>T[A-Z0-9]{6,12}/[AB][A-Z0-9]{6,12}/[A-Za-z0-9]{20,40})" + _E
        ),
    ),
    Detector(
        "stripe-key",
        "A Stripe secret or restricted key (sk_live_, rk_live_, sk_test_)",
        re.compile(_B + r"(?:sk|rk)_(?:live|test|prod)_[A-Za-z0-9]{20,99}" + _E),
        prefixes=("sk_live_", "rk_live_", "sk_test_", "rk_test_", "sk_prod_", "rk_prod_"),
    ),
    Detector(
        "jwt",
        "A JSON Web Token",
        re.compile(
            _B + r"eyJ[A-Za-z0-9_\-]{10,}\.eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{16,}" + _E
        ),
        prefixes=("eyJ",),
        min_entropy=3.5,
    ),
    Detector(
        "perplexity-api-key",
        "A Perplexity API key (pplx-)",
        re.compile(_B + r"pplx-[A-Za-z0-9]{48}" + _E),
        prefixes=("pplx-",),
    ),
    Detector(
        "xai-api-key",
        "An xAI API key (xai-)",
        re.compile(_B + r"xai-[A-Za-z0-9]{70,90}" + _E),
        prefixes=("xai-",),
    ),
    Detector(
        "openrouter-api-key",
        "An OpenRouter API key (sk-or-v1-)",
        re.compile(_B + r"sk-or-v1-[a-f0-9]{64}" + _E),
        prefixes=("sk-or-v1-",),
    ),
    Detector(
        "deepseek-api-key",
        "A DeepSeek API key (sk- and 32 hex digits)",
        re.compile(_B + r"sk-[a-f0-9]{32}" + _E),
        prefixes=("sk-",),
    ),
    Detector(
        "fireworks-api-key",
        "A Fireworks AI API key (fw_)",
        re.compile(_B + r"fw_[A-Za-z0-9]{20,64}" + _E),
        prefixes=("fw_",),
    ),
    Detector(
        "aws-secret-access-key",
        "An AWS secret access key assigned to an aws_secret_* name",
        re.compile(
            r"(?<![A-Za-z0-9])(?i:aws[A-Za-z0-9_.\-]{0,40}?(?:secret|sk)[A-Za-z0-9_.\-]{0,40})"
            r"\\?[\"']?\]?[ \t]*(?:=|:=|:|=>)"
            r"[ \t]*\\?[\"']?(?P<value>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
        ),
        min_entropy=3.5,
    ),
    Detector(
        "generic-secret",
        "A high-entropy value assigned to a *_KEY, *_SECRET, *_TOKEN, *_PASSWORD name",
        re.compile(
            r"(?<![A-Za-z0-9_.\-])(?P<name>[A-Za-z_][A-Za-z0-9_.\-]{0,80}?)\\?[\"']?\]?"
            r"(?:[ \t]+(?:string|str|const|final|String|var|let))?"
            r"[ \t]*(?:::=|:=|\?=|\.=|=>|=|:)[ \t]*\\?[\"'`]?"
            r"(?P<value>[^\s\"'`<>,;(){}\[\]\\]{16,256})"
        ),
        min_entropy=0.0,
        check=_generic_check,
    ),
    Detector(
        "generic-secret",
        'A high-entropy value passed with a secret-looking name: setProperty("X_TOKEN", ...)',
        re.compile(
            r"(?<![A-Za-z0-9_])(?:setProperty|setenv|Setenv|putenv|put|set)\([ \t]*[\"']"
            r"(?P<name>[A-Za-z_][A-Za-z0-9_.\-]{0,80})[\"'][ \t]*,[ \t]*[\"']"
            r"(?P<value>[^\s\"'`<>,;(){}\[\]\\]{16,256})[\"']"
        ),
        min_entropy=0.0,
        check=_generic_check,
    ),
    Detector(
        "generic-secret",
        "A high-entropy XML element with a secret-looking name: <apiToken>...</apiToken>",
        re.compile(
            r"<(?P<name>[A-Za-z_][A-Za-z0-9_.\-]{0,80})(?:[ \t][^<>\n]{0,200})?>[ \t]*"
            r"(?P<value>[^\s\"'`<>,;(){}\[\]\\]{16,256})[ \t]*</"
        ),
        min_entropy=0.0,
        check=_generic_check,
    ),
)

_AWS_SECRET_NEAR_ID = re.compile(
    r"(?<![A-Za-z0-9/+])(?P<value>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
)
_AWS_NEAR_LINES = 4
_NEWLINE = re.compile("\n")


@dataclass(frozen=True)
class RawMatch:
    """One secret found in a text: detector, value, offsets and 1-based line/column."""

    detector: str
    value: str
    start: int
    end: int
    line: int
    column: int
    prefix_len: int

    @property
    def redacted(self) -> str:
        """The value with everything but its prefix masked."""
        return redact_value(self.value, self.prefix_len)

    @property
    def fingerprint(self) -> str:
        """A one-way id of the value."""
        return fingerprint(self.detector, self.value)


def _allowed(lines_at: Callable[[int], str], line: int) -> bool:
    text = lines_at(line)
    if any(m in text for m in ALLOW_MARKERS):
        return True
    return line > 1 and any(m in lines_at(line - 1) for m in ALLOW_NEXT_MARKERS)


def find_secrets(text: str, *, honor_allow: bool = True) -> list[RawMatch]:
    """Every secret in ``text``, in order, one finding per span (specific detectors win).

    Args:
        text: the whole content of a file (or a log message).
        honor_allow: skip matches on lines carrying an allow comment.
    """
    starts = [0] + [m.end() for m in _NEWLINE.finditer(text)]

    def line_of(offset: int) -> int:
        return bisect_right(starts, offset)

    def line_text(line: int) -> str:
        begin = starts[line - 1]
        end = starts[line] - 1 if line < len(starts) else len(text)
        return text[begin:end]

    taken: list[tuple[int, int]] = []
    found: list[RawMatch] = []

    def add(det_name: str, prefix_len: int, value: str, start: int, end: int) -> None:
        if any(start < e and s < end for s, e in taken):
            return
        line = line_of(start)
        if honor_allow and _allowed(line_text, line):
            return
        taken.append((start, end))
        column = start - starts[line - 1] + 1
        found.append(RawMatch(det_name, value, start, end, line, column, prefix_len))

    aws_id_lines: list[int] = []
    for det in DETECTORS:
        if det.name == "private-key" and "PRIVATE KEY" not in text:
            continue
        pos = 0
        while (match := det.pattern.search(text, pos)) is not None:
            value, start, end = det.value_of(match)
            if det.accepts(value, match):
                add(det.name, det.prefix_len(value), value, start, end)
                if det.name == "aws-access-key-id":
                    aws_id_lines.append(line_of(start))
                pos = max(end, match.start() + 1)
            else:  # a rejected wide span may hold a real finding: look inside its value
                pos = max(start, match.start() + 1)
    if aws_id_lines:  # a bare 40-char secret key on a line near an access key id
        for match in _AWS_SECRET_NEAR_ID.finditer(text):
            value = match.group("value")
            near = any(abs(line_of(match.start()) - ln) <= _AWS_NEAR_LINES for ln in aws_id_lines)
            if (
                near
                and not is_placeholder(value)
                and shannon_entropy(value) >= 4.0
                and all(re.search(p, value) for p in (r"[a-z]", r"[A-Z]", r"[0-9]"))
            ):
                add("aws-secret-access-key", 0, value, match.start(), match.end())
    found.sort(key=lambda m: m.start)
    return found
