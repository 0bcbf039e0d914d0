"""Test helpers for rotating-llm and its users: ``FakeProvider``, an LLM provider simulator.

A real HTTP server (aiohttp, the ``testing`` extra; imported only when a server
starts) speaking Gemini's REST API and OpenAI's chat completions, with exact
per-key limits, the providers' real error bodies, and faults on demand::

    from rotating_llm.testing import FakeProvider

    with FakeProvider(rpm=10, tpm=1_000, rpd=100, window=2.0) as fp:
        ...  # fp.url, fp.openai_url, fp.gemini_api_base

Pointing clients at it:

- ``ChatGoogleGenerativeAI(model="gemini-2.5-flash", google_api_key=key, base_url=fp.url)``
- ``genai.Client(api_key=key, http_options=types.HttpOptions(base_url=fp.url))``
- ``openai.OpenAI(api_key=key, base_url=fp.openai_url)``
- ``ChatOpenAI(model="gpt-4o-mini", api_key=key, base_url=fp.openai_url)``
- ``litellm.completion(model="openai/gpt-4o-mini", api_key=key, api_base=fp.openai_url, ...)``
- ``litellm.completion(model="gemini/gemini-2.5-flash", api_key=key,
  api_base=fp.gemini_api_base, ...)``

Endpoints: ``POST /{v1,v1beta}/models/{model}:generateContent``,
``:streamGenerateContent`` (``?alt=sse``, else a JSON array), ``:countTokens``
(free: no quota, not counted); key from ``x-goog-api-key`` or ``?key=``.
``POST /v1/chat/completions`` (with ``stream`` and ``stream_options.include_usage``),
key from ``Authorization: Bearer``. Admin: ``GET /_fake/stats``,
``POST /_fake/reset``, ``POST /_fake/reset_stats``, ``POST /_fake/control``,
``GET /_fake/health``.

Replies are deterministic: ``"You said: <last user text>"``, streamed one word
per chunk; with tools declared (and not disabled) the reply to a user turn is a
call of the tool the prompt names (else the first), its arguments built from the
schema (integers from the prompt's numbers, strings from its first quoted
phrase); after a tool result, ``"Tool <name> returned: ..."``; with a JSON
response schema, a JSON value valid for it. Stop sequences and max output
tokens are applied. ``usageMetadata``/``usage`` and ``modelVersion``/``model``
echo the request.

Tokens: ``ceil(characters / 4)`` of each text part (tool calls and results by
their JSON; images, audio and files 258 each; tool declarations are free).

Limits, exactly: RPM and TPM over a sliding ``window`` (60 s), RPD and TPD
over a sliding ``day_window`` or, with ``day_reset="America/Los_Angeles"``, per
calendar day. TPM/TPD charge the prompt's tokens (``tpm_counts="input"``, Gemini's
quota) or prompt + reply (``"total"``). Refused or faulted requests consume no
quota. Like Gemini, quotas are per project: ``projects={"proj-a": ["k1", "k2"]}``
with ``project_rpm``/``project_tpm``/``project_rpd``/``project_tpd`` makes keys share
one quota; a key outside any project is its own project (``rpm``/``tpm``/``rpd``/
``tpd``). ``true_limits={"k1": {"rpm": 2}}`` adds a limit of one key alone.
``fp.spend(key, requests=, tokens=)`` counts another app's use of a key. Over a
limit: Gemini ``429 RESOURCE_EXHAUSTED`` with ``QuotaFailure`` (``quotaMetric``,
``quotaId`` from :data:`QUOTA_IDS`, or :data:`KEY_QUOTA_IDS` for a true limit,
``quotaDimensions``, ``quotaValue``), ``Help`` and ``RetryInfo.retryDelay`` (whole
seconds, rounded up); OpenAI ``429 rate_limit_exceeded`` with ``Retry-After`` and
``retry-after-ms``. Every OpenAI answer (success and 429) carries
``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` for the key's tightest
per-minute limits (resets as Go durations: ``6m0s``, ``1.5s``, ``20ms``).

Keys: any non-empty key is valid unless ``keys=[...]`` lists the valid ones;
``revoke``/``suspend``/``restore`` change a key while running. Keys are never
printed: stats are keyed by :func:`fingerprint`; look one up with
``fp.key_stats(key)``.

Faults (:class:`Fault`): ``fp.inject(fault, key=None, times=None, probability=None,
seed=None, delay=None, after_chunks=None)``.

pytest fixtures (plugin ``rotating_llm``): ``fake_provider`` and
``fake_provider_factory``. Command line: ``rotating-llm fake-provider --port 8765``.
"""

from __future__ import annotations

from rotating_llm.testing._config import CHARS_PER_TOKEN, Limits, count_tokens, fingerprint
from rotating_llm.testing._faults import Fault
from rotating_llm.testing._gemini import KEY_QUOTA_IDS, QUOTA_IDS, QUOTAS
from rotating_llm.testing._provider import FakeProvider
from rotating_llm.testing._redis import RedisCluster, RedisServer, free_port
from rotating_llm.testing._stats import KeyStats

__all__ = [
    "CHARS_PER_TOKEN",
    "KEY_QUOTA_IDS",
    "QUOTAS",
    "QUOTA_IDS",
    "FakeProvider",
    "Fault",
    "KeyStats",
    "Limits",
    "RedisCluster",
    "RedisServer",
    "count_tokens",
    "fingerprint",
    "free_port",
]
