"""Scanner proof: random keys of every family in every context are found; negatives
stay quiet; every rule's regex is linear (checked on its parsed form and on 1 MB lines)."""

from __future__ import annotations

import random
import re
import string

import pytest

from rotating_llm.scanner.detectors import DETECTORS, find_secrets

_ALNUM = string.ascii_letters + string.digits
_HEX = "0123456789abcdef"


# Seeded per test, so that a run can be repeated: a random key looks like a placeholder by
# chance about once in 50,000 ("xxxx", "000000", "TEST" in its characters; see
# docs/scanner.md), and a test must not fail at that rate.
_RNG = random.Random()


def _r(n: int, alphabet: str = _ALNUM) -> str:
    return "".join(_RNG.choice(alphabet) for _ in range(n))


# family -> (maker, the detector that must find it, the variable name used in contexts)
FAMILIES = {
    "google": (lambda: "AIza" + _r(35, _ALNUM + "-_"), "google-api-key", "GEMINI_API_KEY"),
    "openai-project": (
        lambda: "sk-proj-" + _r(40) + "T3BlbkFJ" + _r(40),
        "openai-api-key",
        "OPENAI_API_KEY",
    ),
    "openai-svcacct": (
        lambda: "sk-svcacct-" + _r(40) + "T3BlbkFJ" + _r(40),
        "openai-api-key",
        "OPENAI_KEY",
    ),
    "openai-admin": (
        lambda: "sk-admin-" + _r(40) + "T3BlbkFJ" + _r(40),
        "openai-api-key",
        "OPENAI_ADMIN_KEY",
    ),
    "openai-legacy": (lambda: "sk-" + _r(20) + "T3BlbkFJ" + _r(20), "openai-api-key", "OPENAI_KEY"),
    "anthropic": (
        lambda: "sk-ant-api03-" + _r(93) + "AA",
        "anthropic-api-key",
        "ANTHROPIC_API_KEY",
    ),
    "anthropic-admin": (
        lambda: "sk-ant-admin01-" + _r(93) + "AA",
        "anthropic-api-key",
        "ANTHROPIC_KEY",
    ),
    "groq": (lambda: "gsk_" + _r(52), "groq-api-key", "GROQ_API_KEY"),
    "hf-user": (lambda: "hf_" + _r(34), "huggingface-token", "HF_TOKEN"),
    "hf-org": (lambda: "api_org_" + _r(34), "huggingface-token", "HF_ORG_TOKEN"),
    "cohere": (lambda: _r(40), "generic-secret", "COHERE_API_KEY"),
    "mistral": (lambda: _r(32), "generic-secret", "MISTRAL_API_KEY"),
    "perplexity": (lambda: "pplx-" + _r(48), "perplexity-api-key", "PPLX_API_KEY"),
    "xai": (lambda: "xai-" + _r(80), "xai-api-key", "XAI_API_KEY"),
    "deepseek": (lambda: "sk-" + _r(32, _HEX), "deepseek-api-key", "DEEPSEEK_API_KEY"),
    "openrouter": (lambda: "sk-or-v1-" + _r(64, _HEX), "openrouter-api-key", "OPENROUTER_API_KEY"),
    "together": (lambda: _r(64, _HEX), "generic-secret", "TOGETHER_API_KEY"),
    "fireworks": (lambda: "fw_" + _r(24), "fireworks-api-key", "FIREWORKS_API_KEY"),
    "aws-id": (
        lambda: "AKIA" + _r(16, string.ascii_uppercase + string.digits),
        "aws-access-key-id",
        "AWS_ACCESS_KEY_ID",
    ),
    "aws-id-a3t": (
        lambda: "A3TX" + _r(16, string.ascii_uppercase + string.digits),
        "aws-access-key-id",
        "AWS_KEY_ID",
    ),
    "bedrock": (
        lambda: "ABSK" + _r(120, _ALNUM + "+/") + "=",
        "aws-bedrock-api-key",
        "AWS_BEARER_TOKEN_BEDROCK",
    ),
    "azure-openai": (lambda: _r(32, _HEX), "generic-secret", "AZURE_OPENAI_API_KEY"),
    "github": (lambda: "ghp_" + _r(36), "github-token", "GITHUB_TOKEN"),
    "github-pat": (lambda: "github_pat_" + _r(82, _ALNUM + "_"), "github-token", "GH_TOKEN"),
    "slack": (
        lambda: "xoxb-" + _r(12, string.digits) + "-" + _r(24),
        "slack-token",
        "SLACK_BOT_TOKEN",
    ),
    "stripe": (lambda: "sk_live_" + _r(48), "stripe-key", "STRIPE_SECRET_KEY"),
    "jwt": (lambda: "eyJ" + _r(30) + ".eyJ" + _r(40) + "." + _r(43), "jwt", "ID_TOKEN"),
    "generic": (lambda: _r(40), "generic-secret", "payments_service_token"),
}

CONTEXTS = {
    "py": lambda n, v: f'{n} = "{v}"\n',
    "env": lambda n, v: f"{n}={v}\n",
    "json": lambda n, v: f'{{"{n}": "{v}"}}\n',
    "yaml": lambda n, v: f"svc:\n  generic:\n    {n}: {v}\n",
    "url": lambda n, v: f"https://x.example.com/v1?{n}={v}\n",
    "log": lambda n, v: f"2026-01-01 INFO sending {n}={v} to provider\n",
    "go": lambda n, v: f'var {n} string = "{v}"\n',
    "java": lambda n, v: f'System.setProperty("{n}", "{v}");\n',
    "xml": lambda n, v: f"<config><{n}>{v}</{n}></config>\n",
    "make": lambda n, v: f"{n} ?= {v}\n",
    "php": lambda n, v: f"${n} .= '{v}';\n",
    "pascal": lambda n, v: f"{n} ::= {v}\n",
}


@pytest.mark.parametrize("context", sorted(CONTEXTS))
@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.slow
def test_every_family_in_every_context(family: str, context: str) -> None:
    _RNG.seed(f"{family}/{context}")
    make, detector, name = FAMILIES[family]
    value = make()
    text = "x = 1\n" + CONTEXTS[context](name, value)
    found = find_secrets(text)
    hits = [m for m in found if m.value == value]
    assert hits, f"{family} in {context} missed: {found}"
    if not detector.startswith("generic"):
        assert hits[0].detector == detector


def test_aws_secret_beside_an_id_and_slack_webhook() -> None:
    _RNG.seed("aws-and-slack-webhook")
    secret = _r(18) + "/" + _r(9) + "+" + _r(9) + "a1"
    key_id = "AKIA" + _r(16, string.ascii_uppercase + string.digits)
    found = find_secrets(f"id {key_id}\nsecret {secret}\n")
    assert {m.value for m in found} == {key_id, secret}
    path = "T" + _r(8, string.ascii_uppercase) + "/B" + _r(8, string.ascii_uppercase) + "/" + _r(24)
    hook = find_secrets(f"url: https://hooks.slack.com/services/{path}\n")
    assert [m.detector for m in hook] == ["slack-webhook"]


NEGATIVES = [
    "public_key = 'Zq8v3mK1pL0xR7tY2wB5nC9dF4gH6jAs'",
    "publicToken: Zq8v3mK1pL0xR7tY2wB5nC9dF4gH6jAs",
    "primaryKey = Zq8v3mK1pL0xR7tY2wB5nC9dF4gH6jAs",
    "foreignKey = Zq8v3mK1pL0xR7tY2wB5nC9dF4gH6jAs",
    '<input name="csrf_token" value="Zq8v3mK1pL0xR7tY2wB5nC9dF4gH6jAs">',
    "csrf_token = Zq8v3mK1pL0xR7tY2wB5nC9dF4gH6jAs",
    "sk-" + "Zq8v3mK1pL0xR7tY2wB5nC9dF4gH6jAsQw3eR5tY7uI9oP1a",  # OpenAI look-alike, no marker
    "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
    "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "OPENAI_API_KEY=sk-proj-your-api-key-here",
    "GEMINI_API_KEY=${GEMINI_API_KEY}",
    "api_key = os.environ.get('API_KEY')",
    "token: {{ secrets.TOKEN }}",
    "password = changeme",
    "GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "stripe = sk_test_XXXXXXXXXXXXXXXXXXXXXXXX",
    # Firebase's published example keys (gitleaks allowlists the same ones)
    'firebase_options.setApiKey("AIzaSyAnLA7NfeLquW1tJFpx_eQCxoX-oo6YyIs")',
    "GOOGLE_API_KEY=AIzaSyabcdefghijklmnopqrstuvwxyz1234567",
    "apiKey: AIzaSyDSb51JiIcB6OJpwwMicseKRhhrOq1cS7g",
    # a bare hex digest with no Azure endpoint near it
    'etag = "9b2cf535f27731c974343645a3985328"',
]


@pytest.mark.parametrize("line", NEGATIVES)
def test_negatives_stay_quiet(line: str) -> None:
    assert find_secrets(line + "\n") == []


# ---------------------------------------------------------------- linear time
_REPEATS = {"MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"}


def _nested_unbounded(tree: object, depth: int = 0) -> list[str]:
    """Repeats (unbounded or wide) nested inside another repeat: the backtracking risk."""
    from re import _parser  # type: ignore[attr-defined]

    problems: list[str] = []
    items = tree.data if isinstance(tree, _parser.SubPattern) else tree  # type: ignore[attr-defined]
    for op, av in items:
        name = str(op)
        if name in _REPEATS:
            lo, hi, sub = av
            unbounded = hi == _parser.MAXREPEAT
            if depth > 0 and unbounded:
                problems.append(f"unbounded repeat {lo},{hi} inside an unbounded repeat")
            problems += _nested_unbounded(sub, depth + 1 if unbounded else depth)
        elif name in {"SUBPATTERN"}:
            problems += _nested_unbounded(av[-1], depth)
        elif name == "BRANCH":
            for alt in av[1]:
                problems += _nested_unbounded(alt, depth)
        elif name in {"ASSERT", "ASSERT_NOT"}:
            problems += _nested_unbounded(av[1], depth)
    return problems


@pytest.mark.parametrize("det", DETECTORS, ids=lambda d: d.name + str(DETECTORS.index(d)))
def test_no_nested_quantifiers(det) -> None:
    from re import _parser  # type: ignore[attr-defined]

    assert _nested_unbounded(_parser.parse(det.pattern.pattern, det.pattern.flags)) == []


ADVERSARIAL = {
    "token-run": "a" * 1_000_000,
    "mixed-run": ("Ab0_.-" * 170_000)[:1_000_000],
    "data-uri": "data:image/png;base64," + ("iVBORw0KGgo" * 90_000),
    "repeated-key": "key=" * 250_000,
    "repeated-token-colon": "api_token: " * 90_000,
    "aws-runs": "aws" * 333_333,
    "eyJ-runs": "eyJ." * 250_000,
    "xml-open": "<apiToken>" * 100_000,
    "setProperty": 'setProperty("' * 70_000,
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("shape", sorted(ADVERSARIAL))
@pytest.mark.slow
def test_one_megabyte_adversarial_lines(shape: str) -> None:
    """Every rule finishes on 1 MB of each shape; the work measure is the number of regex
    search calls the scanner makes, which must stay proportional to the input."""
    line = ADVERSARIAL[shape]
    calls = 0
    originals = [d.pattern for d in DETECTORS]

    class Probe:
        def __init__(self, pattern: re.Pattern[str]) -> None:
            self.p = pattern
            self.groupindex = pattern.groupindex

        def search(self, text: str, pos: int = 0) -> re.Match[str] | None:
            nonlocal calls
            calls += 1
            return self.p.search(text, pos)

    try:
        for d in DETECTORS:
            object.__setattr__(d, "pattern", Probe(d.pattern))
        found = find_secrets(line)
    finally:
        for d, p in zip(DETECTORS, originals, strict=True):
            object.__setattr__(d, "pattern", p)
    assert found == [] or all(m.value in line for m in found)
    # each search attempt is bounded by the rules' bounded quantifiers (checked above)
    assert calls <= len(DETECTORS) + len(line) // 3 + 10
