"""The quick test before the detectors never hides a finding, and rejects plain log lines."""

from __future__ import annotations

import random
import re
import string
import sys

import pytest

from rotating_llm._prefilter import may_hold_secret
from rotating_llm.redaction import MAX_SCAN_CHARS
from rotating_llm.scanner.corpus import KINDS, make_key
from rotating_llm.scanner.detectors import DETECTORS, find_secrets

_ALNUM = string.ascii_letters + string.digits


def _body(rng: random.Random, n: int, alphabet: str = _ALNUM) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


_HEX = "0123456789abcdef"
#: Secrets of the detectors the corpus does not make: (before, length, alphabet, after).
_EXTRA: tuple[tuple[str, int, str, str], ...] = (
    ("xoxb-", 40, _ALNUM, ""),
    ("xapp-", 40, _ALNUM, ""),
    ("https://hooks.slack.com/services/T0123ABCD/B0123ABCD/", 24, _ALNUM, ""),
    ("sk_live_", 30, _ALNUM, ""),
    ("rk_test_", 30, _ALNUM, ""),
    ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.", 30, _ALNUM, ""),
    ("ghp_", 36, _ALNUM, ""),
    ("github_pat_", 82, _ALNUM + "_", ""),
    ("pplx-", 48, _ALNUM, ""),
    ("xai-", 80, _ALNUM, ""),
    ("fw_", 30, _ALNUM, ""),
    ("hf_", 34, _ALNUM, ""),
    ("api_org_", 34, _ALNUM, ""),
    ("ABSK", 80, _ALNUM + "+/", ""),
    ("sk-or-v1-", 64, _HEX, ""),
    ("sk-", 32, _HEX, ""),
    ("sk-", 20, _ALNUM, "T3BlbkFJ" + "A1b2C3d4E5f6G7h8I9j0"),
)


def _extra_kinds(rng: random.Random) -> list[str]:
    return [before + _body(rng, n, abc) + after for before, n, abc, after in _EXTRA]


_AZURE_HOSTS = (
    "myres.openai.azure.com",
    "https://MYRES.COGNITIVESERVICES.AZURE.COM/",
    "x.services.ai.Azure.com",
)
_AWS_SECRET_ALPHABET = _ALNUM + "+/"


def _context_cases(rng: random.Random) -> list[str]:
    """Texts whose finding needs more than a prefix: Azure keys beside an endpoint, AWS
    secret keys that start with ``/``, values after runs of separators."""
    hexv = _body(rng, 32, _HEX)
    long = _body(rng, 84)
    slash = "/" + _body(rng, 39, _AWS_SECRET_ALPHABET)
    generic = make_key("generic-secret", rng)
    cases = []
    for host in _AZURE_HOSTS:
        cases += [
            f"calling {host} with key {hexv}",
            f"endpoint {host} key {long}",
            f"key={hexv} ({host})",
            f"{long}\n" + "." * 300 + host,
        ]
    for sep in ("=", ":", ": ", " = ", "=>", ":=", ' = "', ": '", '=\\"', '"] = "'):
        cases += [f"aws_secret_access_key{sep}{slash}", f"AWS_SK{sep}{slash}"]
    for sep in ("=", ":", "::=", ":=", "?=", ".=", "=>", " = "):
        for run in ("", "=" * 15, ":" * 15, "=" * 16 + "/"):
            cases.append(f"API_TOKEN{sep}{run}{generic}")
    return cases


_CONTEXTS = (
    "{}",
    "calling {}",
    "({})",
    '"{}"',
    "Bearer {}",
    "url=https://x.example/v1?key={}",
    'headers {{"x-api-key": "{}"}}',
    '\\"{}\\"',
    "key: {}",
    "a,{}",
    "{name}={}",
    "{name}: '{}'",
    '{name} = "{}"',
    "<{name}>{}</{name}>",
)


@pytest.mark.parametrize("seed", range(40))
def test_every_finding_passes_the_quick_test(seed: int) -> None:
    rng = random.Random(seed)
    values = [(make_key(kind, rng), name) for kind, (_, name) in KINDS.items()]
    values += [(value, "API_TOKEN") for value in _extra_kinds(rng)]
    found = 0
    for value, name in values:
        for context in _CONTEXTS:
            text = context.replace("{name}", name).format(value)
            if find_secrets(text, honor_allow=False):
                found += 1
                assert may_hold_secret(text, MAX_SCAN_CHARS), text
    assert found >= len(values) * 3


@pytest.mark.parametrize("seed", range(20))
def test_findings_that_need_context_pass_the_quick_test(seed: int) -> None:
    found = 0
    for text in _context_cases(random.Random(seed)):
        if find_secrets(text, honor_allow=False):
            found += 1
            assert may_hold_secret(text, MAX_SCAN_CHARS), text
    assert found >= 40


if sys.version_info >= (3, 11):
    import re._parser as _sre
else:  # pragma: no cover - Python 3.10
    import sre_parse as _sre

#: Characters a sampled "any character" or negated class draws from.
_PRINTABLE = string.ascii_letters + string.digits + string.punctuation + " "


#: What a sampled ``name`` group says (the generic detectors need a secret-looking name).
_NAMES = ("API_TOKEN", "client_secret", "dbPassword", "auth", "x.api-key")


def _sample(pattern: object, rng: random.Random, name_group: int = -1) -> str:
    """A random string that a parsed regular expression may match (look-arounds ignored:
    the detector decides)."""
    out: list[str] = []
    for op, av in pattern:  # type: ignore[attr-defined]
        name = str(op)
        if name == "LITERAL":
            out.append(chr(av))
        elif name == "NOT_LITERAL":
            out.append(rng.choice([c for c in _ALNUM if ord(c) != av]))
        elif name == "ANY":
            out.append(rng.choice(_PRINTABLE))
        elif name == "IN":
            out.append(rng.choice(_class_chars(av)))
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, sub = av
            count = rng.randint(low, min(high, low + 90))
            out.extend(_sample(sub, rng, name_group) for _ in range(count))
        elif name == "SUBPATTERN" and av[0] == name_group:
            out.append(rng.choice(_NAMES))
        elif name == "SUBPATTERN":
            out.append(_sample(av[-1], rng, name_group))
        elif name == "BRANCH":
            out.append(_sample(rng.choice(av[1]), rng, name_group))
    return "".join(out)


def _class_chars(items: list[tuple[object, object]]) -> str:
    chars: set[str] = set()
    negate = False
    for op, av in items:
        name = str(op)
        if name == "NEGATE":
            negate = True
        elif name == "LITERAL":
            chars.add(chr(av))  # type: ignore[arg-type]
        elif name == "RANGE":
            low, high = av  # type: ignore[misc]
            chars.update(chr(c) for c in range(low, high + 1))
        elif name == "CATEGORY":
            kind = str(av)
            chars.update(
                " \t" if "SPACE" in kind else string.digits if "DIGIT" in kind else _ALNUM + "_"
            )
    if negate:
        return "".join(c for c in _PRINTABLE if c not in chars)
    return "".join(sorted(chars))


_DETECTOR_CONTEXTS = ("{}", "calling {} now", "({})", "{} at myres.openai.azure.com", "'{}'")


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.slow
def test_every_detector_regex_sample_passes_the_quick_test(seed: int) -> None:
    rng = random.Random(seed)
    found: set[int] = set()
    for index, det in enumerate(DETECTORS):
        parsed = _sre.parse(det.pattern.pattern, det.pattern.flags)
        name_group = det.pattern.groupindex.get("name", -1)
        for _ in range(30):
            sample = _sample(parsed, rng, name_group)
            for context in _DETECTOR_CONTEXTS:
                text = context.format(sample)
                if det.name == "private-key":
                    text += "\n" + _body(rng, 64, _ALNUM + "+/") + "\n-----END"
                if find_secrets(text, honor_allow=False):
                    found.add(index)
                    assert may_hold_secret(text, MAX_SCAN_CHARS), text
    assert found == set(range(len(DETECTORS))), sorted(set(range(len(DETECTORS))) - found)


def test_every_detector_prefix_passes_the_quick_test() -> None:
    rng = random.Random(1)
    # private-key's shown prefix is "-----BEGIN"; its pattern needs "PRIVATE KEY" (above)
    prefixes = {p for det in DETECTORS if det.name != "private-key" for p in det.prefixes}
    for prefix in prefixes:
        assert may_hold_secret(f"x {prefix}{_body(rng, 40)} y", MAX_SCAN_CHARS), prefix


@pytest.mark.parametrize(
    "line",
    [
        "x alpha 42",
        "x GET https://api.example.com/v1/models?page=2 200",
        "HTTP Request: POST https://generativelanguage.googleapis.com/v1beta/models/"
        'gemini-2.0-flash:generateContent "HTTP/1.1 200 OK"',
        "The request was retried after the provider answered with a quota error.",
        "-" * 72,
        "_" * 72,
        "=" * 72,
        ":" * 72,
        "user_id=usr_01HZX3 status_code=200 elapsed_ms=12.5",
        "HTTP/1.1 429 Too Many Requests, retry after 7 s",
    ],
)
def test_plain_lines_skip_the_detectors(line: str) -> None:
    assert not may_hold_secret(line, MAX_SCAN_CHARS)


def test_a_value_after_a_run_of_separators_is_still_seen() -> None:
    key = make_key("generic-token", random.Random(3))
    for text in (f"TOKEN={'=' * 20}{key}", f"TOKEN:{':' * 20}{key}"):
        assert may_hold_secret(text, len(text))


def test_only_the_head_is_looked_at() -> None:
    key = make_key("google", random.Random(2))
    text = "a" * 100 + " " + key
    assert may_hold_secret(text, len(text))
    assert not may_hold_secret(text, 100)


#: The separator rule in its plain form (one branch per separator: blanks, an escaped or
#: plain quote, then the value), with every blank ending a value, and the prefix rules.
_PLAIN_VALUE = r"[^\s\"'`<>,;(){}\[\]\\]"
_PLAIN_AFTER = (
    r"[ \t]*\\?[\"'`]?(?:[^\s\"'`<>,;(){}\[\]\\/]" + _PLAIN_VALUE + "{15}|/[A-Za-z0-9/+]{39})"
)
_PLAIN = re.compile(
    "|".join(
        (
            "=(?!={15})" + _PLAIN_AFTER,
            ":(?!:{15})" + _PLAIN_AFTER,
            ">" + _PLAIN_AFTER,
            "," + _PLAIN_AFTER,
            r"A(?:Iza|KIA|SIA|BIA|CCA|3T|BSK)",
            r"V(?<=PRIV)ATE KEY",
            r"J(?<=eyJ)",
            r"k(?:-(?<=sk-)|_(?:(?:live|test|prod)_|(?<=gsk_))|s\.slack(?<=hooks\.slack))",
            r"g(?:h[pousr]_|ithub_pat_|_(?<=api_org_))",
            r"x(?:ox|app-|ai-|-(?<=pplx-))",
            r"f(?:_(?<=hf_)|w_)",
            r"z(?i:(?<=\.az)ure\.com)",
            r"Z(?i:(?<=\.az)ure\.com)",
        )
    )
)
_PIECES = (
    *"=:>,",
    "::=",
    ":=",
    "=>",
    " ",
    "\t",
    "  ",
    "\\",
    '"',
    "'",
    "`",
    "/",
    "//",
    "\n",
    "\u00a0",
    "\u2003",
    "=" * 15,
    ":" * 15,
    "sk-",
    "ghp_",
    "AIza",
    ".azure.com",
)


def _fuzz_text(rng: random.Random) -> str:
    """Random pieces, or assignments: separator, blanks, backslash, quote, value."""
    out = []
    for _ in range(rng.randint(1, 6)):
        alphabet = rng.choice((_AWS_SECRET_ALPHABET, _AWS_SECRET_ALPHABET + "._-"))
        if rng.random() < 0.5:
            out.append(rng.choice(_PIECES))
            out.append(_body(rng, rng.randint(0, 45), alphabet))
            continue
        out.append(rng.choice(("=", ":", ">", ",", "::=", ":=", "=>", "=" * 15, ":" * 16)))
        out.append(rng.choice(("", "", " ", "\t", "  ", "\u00a0")))
        out.append(rng.choice(("", "", "\\")))
        out.append(rng.choice(("", "", '"', "'", "`")))
        out.append(rng.choice(("", "", "/", "//")))
        length = rng.choice((15, 16, 17, 38, 39, 40, rng.randint(1, 45)))  # edges too
        out.append(_body(rng, length, alphabet))
    return "".join(out)


def test_the_quick_test_accepts_all_the_plain_rule_accepts() -> None:
    """The branch-per-first-character form matches wherever the plain form does, and
    exactly where it does on ASCII text (it ends values at ASCII blanks only)."""
    from rotating_llm._prefilter import MAY_HOLD_SECRET

    rng = random.Random(7)
    seen = {True: 0, False: 0}
    for _ in range(20_000):
        text = _fuzz_text(rng)
        plain = _PLAIN.search(text) is not None
        quick = MAY_HOLD_SECRET.search(text) is not None
        assert quick or not plain, repr(text)
        if text.isascii():
            assert quick == plain, repr(text)
        seen[plain] += 1
    assert min(seen.values()) > 2_000, seen
