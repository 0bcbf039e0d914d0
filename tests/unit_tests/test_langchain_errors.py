"""Classification of provider exceptions into DESIGN.md's failure table."""

from __future__ import annotations

import json

import httpx2
import openai
import pytest
from google.genai.errors import ClientError, ServerError
from langchain_core.exceptions import ModelRateLimitError
from langchain_google_genai.chat_models import (
    GoogleAPIError,
    GoogleInvalidRequestError,
    GoogleRateLimitError,
)

from rotating_llm import AllKeysExhaustedError, FailureKind
from rotating_llm.langchain import (
    RotatingAPIError,
    RotatingAuthenticationError,
    RotatingContextOverflowError,
    RotatingRateLimitError,
    classify,
)
from rotating_llm.langchain._errors import exhausted, provider_error
from rotating_llm.testing import QUOTA_IDS


def gemini(code: int, status: str, message: str, details: list[dict]) -> ClientError:
    body = {"error": {"code": code, "status": status, "message": message, "details": details}}
    return ClientError(code, body)


def wrapped(outer: type[Exception], inner: BaseException) -> Exception:
    """The way langchain-google-genai raises: its own type, from the SDK's error."""
    try:
        try:
            raise inner
        except BaseException as exc:
            raise outer(f"Error calling model: {exc}") from exc
    except Exception as final:
        return final


def _quota(kind: str) -> dict:
    return {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [{"quotaId": QUOTA_IDS[kind], "quotaMetric": "m"}],
    }


_RETRY = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "17s"}


def test_gemini_invalid_key_400_is_auth_not_a_bad_request() -> None:
    info = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}
    err = gemini(400, "INVALID_ARGUMENT", "API key not valid.", [info])
    found = classify(wrapped(GoogleInvalidRequestError, err))
    assert found.kind is FailureKind.AUTH
    assert "API_KEY_INVALID" in found.reason and found.status == 400


def test_gemini_per_minute_429_carries_the_retry_delay() -> None:
    err = gemini(429, "RESOURCE_EXHAUSTED", "quota", [_quota("rpm"), _RETRY])
    found = classify(wrapped(GoogleRateLimitError, err))
    assert found.kind is FailureKind.RATE_LIMIT and found.retry_after == 17.0


def test_gemini_per_day_429_is_daily_quota() -> None:
    err = gemini(429, "RESOURCE_EXHAUSTED", "quota", [_quota("rpd"), _RETRY])
    assert classify(err).kind is FailureKind.DAILY_QUOTA


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        (403, "PERMISSION_DENIED", FailureKind.AUTH),
        (500, "INTERNAL", FailureKind.SERVER),
        (503, "UNAVAILABLE", FailureKind.SERVER),
        (504, "DEADLINE_EXCEEDED", FailureKind.TIMEOUT),
        (400, "INVALID_ARGUMENT", FailureKind.INVALID_REQUEST),
        (404, "NOT_FOUND", FailureKind.INVALID_REQUEST),
    ],
)
def test_gemini_statuses(code: int, status: str, kind: FailureKind) -> None:
    body = {"error": {"code": code, "status": status, "message": "x", "details": []}}
    if code >= 500:  # langchain-google-genai re-raises a ServerError as GoogleAPIError
        err: Exception = GoogleAPIError(code=code, response_json=body)
    else:
        err = wrapped(GoogleInvalidRequestError, ClientError(code, body))
    assert classify(err).kind is kind


def _openai(cls: type[openai.APIStatusError], code: int, body: dict, **headers: str):
    request = httpx2.Request("POST", "http://x/v1/chat/completions")
    response = httpx2.Response(code, headers=headers, request=request, text=json.dumps(body))
    return cls(body["error"]["message"], response=response, body=body)


def test_openai_429_retry_after_ms_wins() -> None:
    body = {"error": {"message": "Rate limit reached", "code": "rate_limit_exceeded"}}
    err = _openai(openai.RateLimitError, 429, body, **{"retry-after-ms": "1500"})
    found = classify(err)
    assert found.kind is FailureKind.RATE_LIMIT and found.retry_after == 1.5


def test_openai_per_day_and_insufficient_quota_are_daily() -> None:
    body = {"error": {"message": "on requests per day (RPD)", "code": "rate_limit_exceeded"}}
    assert classify(_openai(openai.RateLimitError, 429, body)).kind is FailureKind.DAILY_QUOTA
    body = {"error": {"message": "quota", "code": "insufficient_quota"}}
    assert classify(_openai(openai.RateLimitError, 429, body)).kind is FailureKind.DAILY_QUOTA


def test_openai_401_and_400() -> None:
    body = {"error": {"message": "Incorrect API key", "code": "invalid_api_key"}}
    assert classify(_openai(openai.AuthenticationError, 401, body)).kind is FailureKind.AUTH
    body = {"error": {"message": "bad", "code": None}}
    found = classify(_openai(openai.BadRequestError, 400, body))
    assert found.kind is FailureKind.INVALID_REQUEST


def test_transport_errors_and_timeouts() -> None:
    import httpx

    assert classify(httpx.ReadTimeout("slow")).kind is FailureKind.TIMEOUT
    assert classify(httpx.RemoteProtocolError("reset")).kind is FailureKind.SERVER
    assert classify(ConnectionResetError()).kind is FailureKind.SERVER
    assert classify(TimeoutError()).kind is FailureKind.TIMEOUT
    assert classify(json.JSONDecodeError("x", "{", 1)).kind is FailureKind.SERVER
    assert classify(ValueError("my own bug")).kind is None


def test_exhausted_error_is_both_core_and_langchain() -> None:
    core = AllKeysExhaustedError("m", 2.5, {"k0": "rpm"})
    err = exhausted(core)
    assert isinstance(err, RotatingRateLimitError)
    assert isinstance(err, AllKeysExhaustedError) and isinstance(err, ModelRateLimitError)
    assert err.retry_after == 2.5 and err.reasons == {"k0": "rpm"} and str(err) == str(core)
    assert err.is_retryable


def test_provider_error_redacts_the_secret_and_names_the_key() -> None:
    secret = "sk-very-secret-value"
    body = {"error": {"message": f"Incorrect API key provided: {secret}", "code": None}}
    exc = _openai(openai.BadRequestError, 400, body)
    err = provider_error(exc, classify(exc), model="m", key_id="k7", attempts=1, secret=secret)
    assert isinstance(err, RotatingAuthenticationError)  # the text names a refused key
    assert secret not in str(err) and "k7" in str(err) and err.status == 400


def test_context_overflow_keeps_langchains_type() -> None:
    from langchain_google_genai.chat_models import GoogleContextOverflowError

    exc = GoogleContextOverflowError(400, {"error": {"message": "exceeds tokens"}})
    found = classify(exc)
    err = provider_error(exc, found, model="m", key_id="k", attempts=1)
    assert isinstance(err, RotatingContextOverflowError)


def test_server_error_type() -> None:
    exc = ServerError(503, {"error": {"code": 503, "status": "UNAVAILABLE", "message": "busy"}})
    err = provider_error(exc, classify(exc), model="m", key_id="k", attempts=3)
    assert isinstance(err, RotatingAPIError) and err.attempts == 3
