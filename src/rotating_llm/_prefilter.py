"""The quick test that lets a log line without a secret skip the secret detectors.

Every detector of :mod:`rotating_llm.scanner.detectors` needs one of:

- a known prefix: ``AIza`` (Google), ``AKIA``/``ASIA``/``ABIA``/``ACCA``/``A3T`` (AWS key
  ids), ``ABSK`` (Bedrock), ``PRIVATE KEY`` (PEM), ``eyJ`` (JWT), ``sk-`` (OpenAI,
  Anthropic, DeepSeek, OpenRouter), ``sk_``/``rk_`` + ``live_``/``test_``/``prod_``
  (Stripe), ``gsk_`` (Groq), ``hooks.slack`` (Slack webhooks), ``gh?_``/``github_pat_``
  (GitHub), ``hf_``/``api_org_`` (Hugging Face), ``xox``/``xapp-`` (Slack), ``xai-``,
  ``pplx-``, ``fw_`` (Fireworks);
- ``.azure.com`` in any case (the Azure OpenAI key has no prefix: it counts only beside an
  endpoint, and every endpoint host ends so);
- a separator (``=``, ``:``, ``>``, ``,``) before 16 value characters: the generic
  assignments (``=``, ``:``, ``:=``, ``::=``, ``?=``, ``.=``, ``=>``), ``setProperty("X",``
  and ``<name>`` elements; a value starting with ``/`` counts only as an AWS secret access
  key (40 of ``[A-Za-z0-9/+]``), since the generic detectors refuse paths. A bare AWS
  secret key near an access key id is found only with the id, whose prefix is above.

Text with none of these cannot hold a finding, so :func:`may_hold_secret` rejects it with
one regular-expression pass.

Python's ``re`` skips quickly over characters that cannot start a match and pays for every
one that can, and for every step it takes there. Each prefix is therefore found from a rare
character of it (``k`` of ``sk-``, ``V`` of ``PRIVATE KEY``, ``x`` of ``xoxb-``, ``J`` of
``eyJ``, ``f`` of ``hf_``, ``z`` of ``azure``), checked backwards with a fixed-width
look-behind, never from ``-`` or ``_``, which fill separator lines and identifiers. After a
separator, each branch starts with a literal or a class, so the engine drops the branches
whose first character does not fit in one step (the ``:`` of ``https://`` tries only the
``/`` branch, the ``=`` of ``status=200`` only the direct value) instead of walking the
optional blanks, backslash and quote of one branch. Value characters end at ASCII blanks
only, where the detectors end them at every blank: the test may pass more text to the
detectors, never less.

The test is a superset of what the detectors match, so it never hides a finding; tests
plant every detector's secret in many contexts, and random samples of every detector's own
expression, to hold it to that, and compare it with the plain one-branch form of the rule.
"""

from __future__ import annotations

import re

__all__ = ["MAY_HOLD_SECRET", "may_hold_secret"]

#: Characters that end a value (the detectors' ``[^\s"'`<>,;(){}[\]\\]``, ASCII blanks only).
_STOP = " \t\n\r\f\v\"'`<>,;(){}\\[\\]\\\\"
_VALUE = f"[^{_STOP}]"
# A value: 16 value characters, the first not ``/`` (``https://`` is no assignment), or 40
# of an AWS secret access key starting with ``/`` (``aws_secret_access_key=/...``).
_FIRST = f"[^{_STOP}/]"
# Look-aheads of one excluded character (a blank; the ``.`` of a host name after ``//``)
# run in a tight loop in the engine, so most values are refused before the class checks.
_RUN = "(?=[^ ]{15})"
_AWS_SLASH = "/(?=[^.]{39})[A-Za-z0-9/+]{39}"
_BODY = f"(?:{_FIRST}{_RUN}{_VALUE}{{15}}|{_AWS_SLASH})"
_QUOTE = "[\"'`]"


def _after(separator: str) -> str:
    """``separator``, blanks, an escaped or plain quote, then a value: one branch per first
    character. ``=`` and ``:`` are value characters too: a banner line of them would match
    at every position and send the line to the detectors, so a separator followed by 15
    more of itself is skipped, which hides nothing (a value of 15 ``=`` and fewer than 16
    other characters is below every detector's entropy floor; with 16 or more, the run's
    last ``=`` matches)."""
    sep = re.escape(separator)
    if separator in "=:":  # a value character: its own branch, with the banner rule
        direct = [f"[^{_STOP}/{sep}]{_RUN}{_VALUE}{{15}}", f"{sep}(?!{sep}{{14}}){_VALUE}{{15}}"]
    else:
        direct = [f"{_FIRST}{_RUN}{_VALUE}{{15}}"]
    blanks = f"[ \\t]+(?:{_BODY}|\\\\{_QUOTE}?{_BODY}|{_QUOTE}{_BODY})"
    branches = [*direct, _AWS_SLASH, blanks, f"\\\\{_QUOTE}?{_BODY}", f"{_QUOTE}{_BODY}"]
    return sep + "(?:" + "|".join(branches) + ")"


# Every alternative starts with a literal character, so ``re`` builds the set of possible
# first characters and skips the others in C.
_ALTERNATIVES = (
    _after(":"),
    _after("="),
    _after(","),
    _after(">"),
    r"g(?:h[pousr]_|ithub_pat_|_(?<=api_org_))",  # GitHub, Hugging Face org tokens
    r"f(?:_(?<=hf_)|w_)",  # Hugging Face, Fireworks
    # sk- (OpenAI, Anthropic, DeepSeek, OpenRouter), sk_/rk_live_ (Stripe), gsk_ (Groq),
    # hooks.slack (Slack webhooks)
    r"k(?:-(?<=sk-)|_(?:(?:live|test|prod)_|(?<=gsk_))|s\.slack(?<=hooks\.slack))",
    r"x(?:ox|app-|ai-|-(?<=pplx-))",  # Slack, xAI, Perplexity
    r"A(?:Iza|KIA|SIA|BIA|CCA|3T|BSK)",  # Google, AWS access key ids, Bedrock
    # Azure OpenAI keys (32 hex or 84 characters, no prefix) count only beside an endpoint,
    # which always ends in ``.azure.com`` (the detector compares in lower case)
    r"z(?i:(?<=\.az)ure\.com)",
    r"Z(?i:(?<=\.az)ure\.com)",
    r"V(?<=PRIV)ATE KEY",  # PEM blocks (from V: P starts HTTP and POST)
    r"J(?<=eyJ)",  # JWTs
)
#: One pass: a match means the detectors must look; none means the text holds no finding.
MAY_HOLD_SECRET = re.compile("|".join(_ALTERNATIVES))


def may_hold_secret(text: str, end: int) -> bool:
    """Whether the first ``end`` characters of ``text`` may hold a detector's finding."""
    return MAY_HOLD_SECRET.search(text, 0, end) is not None
