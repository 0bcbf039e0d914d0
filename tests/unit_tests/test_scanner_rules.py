"""Each rule's own true and false positives, in the style of gitleaks' rule tests."""

from __future__ import annotations

import secrets
import string

import pytest

from rotating_llm.scanner.detectors import DETECTORS, find_secrets

_A = string.ascii_letters + string.digits


def _r(n: int, alphabet: str = _A) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


# rule -> (true positives: (line, secret), false positives: lines with no finding)
RULES: dict[str, tuple[list[tuple[str, str]], list[str]]] = {}


def _rule(name: str, tps: list[str], fps: list[str], line: str = "value {}") -> None:
    RULES[name] = ([(line.format(v), v) for v in tps], fps)


_rule("private-key", [], ["-----BEGIN PRIVATE KEY-----\\n...\\n-----END PRIVATE KEY-----"])
_rule(
    "anthropic-api-key",
    ["sk-ant-api03-" + _r(93) + "AA"],
    ["sk-ant-api03-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"],
)
_rule("openai-api-key", ["sk-proj-" + _r(30) + "T3BlbkFJ" + _r(30)], ["sk-proj-" + _r(70)])
_rule("google-api-key", ["AIza" + _r(35)], ["AIzaSyAbCdEfGhIjKlMnOpQrStUvWxYz1234567"])
RULES["google-api-key"][1].extend(  # Firebase's published example keys stay quiet
    ["AIzaSyAnLA7NfeLquW1tJFpx_eQCxoX-oo6YyIs", "AIzaSyabcdefghijklmnopqrstuvwxyz1234567"]
)
_rule(
    "azure-openai-key",
    [_r(32, "0123456789abcdef"), _r(84)],
    [
        "sha " + _r(32, "0123456789abcdef"),  # a bare hex digest, no Azure endpoint near
        "endpoint https://example.openai.azure.com/ key your-azure-openai-key",
    ],
    line="AZURE_OPENAI_ENDPOINT=https://my-res.openai.azure.com/\nvalue = {}",
)
_rule("groq-api-key", ["gsk_" + _r(52)], ["gsk_your_groq_api_key_here_0000000000000000000"])
_rule(
    "huggingface-token",
    ["hf_" + _r(34), "api_org_" + _r(34)],
    ["hf_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"],
)
_rule(
    "aws-access-key-id",
    ["AKIA" + _r(16, string.ascii_uppercase), "A3TQ" + _r(16, string.ascii_uppercase)],
    ["AKIAIOSFODNN7EXAMPLE"],
)
_rule("aws-bedrock-api-key", ["ABSK" + _r(100)], ["ABSK" + "x" * 100])
_rule("github-token", ["ghp_" + _r(36), "github_pat_" + _r(82)], ["ghp_" + "x" * 36])
_rule(
    "slack-token",
    ["xoxb-" + _r(12, string.digits) + "-" + _r(24)],
    ["xoxb-your-slack-bot-token-here"],
)
_rule(
    "slack-webhook",
    [],
    ["https://hooks.slack.com/services/TXXXXXXXX/BXXXXXXXX/XXXXXXXXXXXXXXXXXXXXXXXX"],
)
_rule("stripe-key", ["sk_live_" + _r(40)], ["sk_live_" + "0" * 24, "pk_live_" + _r(24)])
_rule("jwt", ["eyJ" + _r(20) + ".eyJ" + _r(30) + "." + _r(43)], ["eyJhbGciOi.notajwt"])
_rule("perplexity-api-key", ["pplx-" + _r(48)], ["pplx-" + "x" * 48])
_rule("xai-api-key", ["xai-" + _r(80)], ["xai-abcdefghijklmnopqrstuvwxyz1234567890"])
_rule("openrouter-api-key", ["sk-or-v1-" + _r(64, "0123456789abcdef")], ["sk-or-v1-" + "0" * 64])
_rule(
    "deepseek-api-key",
    ["sk-" + _r(32, "0123456789abcdef")],
    ["sk-" + "a" * 32, "task-" + _r(32, "0123456789abcdef")],
)
_rule("fireworks-api-key", ["fw_" + _r(24)], ["fw_xxxxxxxxxxxxxxxxxxxxxxxx"])
_rule(
    "aws-secret-access-key",
    [_r(38) + "a1"],
    ["aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"],
    "aws_secret_access_key = {}",
)
_rule(
    "generic-secret",
    [_r(40)],
    ["api_key = settings.api_key_name", "monkey = " + _r(40), "publicKey = " + _r(40)],
    "service_api_token: {}",
)


def test_every_rule_has_examples() -> None:
    assert {d.name for d in DETECTORS} <= set(RULES)


@pytest.mark.parametrize("rule", sorted(RULES))
def test_rule_true_positives(rule: str) -> None:
    for line, value in RULES[rule][0]:
        hits = [m for m in find_secrets(line + "\n") if m.value == value]
        assert hits and hits[0].detector == rule, (rule, line)


@pytest.mark.parametrize("rule", sorted(RULES))
def test_rule_false_positives(rule: str) -> None:
    for line in RULES[rule][1]:
        assert find_secrets(line + "\n") == [], (rule, line)


def test_private_key_and_slack_webhook_true_positives() -> None:
    body = "\n".join(_r(64, _A + "+/") for _ in range(4))
    block = f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----\n"
    assert [m.detector for m in find_secrets(block)] == ["private-key"]
    path = f"T{_r(9, string.ascii_uppercase)}/B{_r(9, string.ascii_uppercase)}/{_r(24)}"
    found = find_secrets(f"hook = 'https://hooks.slack.com/services/{path}'\n")
    assert [m.detector for m in found] == ["slack-webhook"]


def test_a_random_key_that_happens_to_spell_a_placeholder_word_is_found() -> None:
    # found in CI: a generated key containing "faKE" was taken for a placeholder
    for word in ("fake", "Test", "your"):
        key = "sk-proj-" + _r(40) + word + _r(20) + "T3BlbkFJ" + _r(60)
        hits = find_secrets(f"foreign {key}\n")
        assert [h.detector for h in hits] == ["openai-api-key"], word
    assert find_secrets("OPENAI_API_KEY=sk-proj-your-api-key-here\n") == []
