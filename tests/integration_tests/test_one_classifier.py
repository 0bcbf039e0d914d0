"""One failure classifier: every provider answer of the failure table means the same in
every face.

A loopback HTTP server answers with the providers' own error answers (status, JSON body,
headers; or a reset connection, or no answer before the client's timeout). The real
SDKs call it: ``ChatGoogleGenerativeAI`` and ``ChatOpenAI`` (the LangChain face, which
the ``RequestRouter`` sends through) and ``litellm.completion`` (the LiteLLM face). Each
face's extractor + the core classifier must give the very same ``Classified``.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from _sdk_clients import collect_sdk_clients  # noqa: F401 (an autouse fixture)

from rotating_llm.failures import Classified, FailureKind
from rotating_llm.langchain._errors import classify as langchain_classify
from rotating_llm.litellm import classify as litellm_classify

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # no download attempts
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*using the `ReadOnly` qualifier:UserWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning"),
]

SECRET = "AIzaSy-one-classifier-secret-000000001"
Answer = tuple[int, dict[str, Any] | None, dict[str, str]]


def _gemini(code: int, status: str, message: str, *details: dict[str, Any]) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status, "details": details}}


def _info(reason: str) -> dict[str, Any]:
    return {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": "googleapis.com",
        "metadata": {"service": "generativelanguage.googleapis.com"},
    }


def _quota(quota_id: str) -> dict[str, Any]:
    return {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [{"quotaMetric": "generate_content_requests", "quotaId": quota_id}],
    }


RETRY = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "17s"}
QUOTA_MSG = "You exceeded your current quota, please check your plan and billing details."

#: The failure table's Gemini answers: (name, answer, expected kind).
GEMINI: list[tuple[str, Answer, FailureKind]] = [
    (
        "429 per-minute RetryInfo",
        (
            429,
            _gemini(
                429,
                "RESOURCE_EXHAUSTED",
                QUOTA_MSG,
                _quota("GenerateRequestsPerMinutePerProjectPerModel-FreeTier"),
                RETRY,
            ),
            {},
        ),
        FailureKind.RATE_LIMIT,
    ),
    (
        "429 per-day quota id",
        (
            429,
            _gemini(
                429,
                "RESOURCE_EXHAUSTED",
                QUOTA_MSG,
                _quota("GenerateRequestsPerDayPerProjectPerModel-FreeTier"),
                RETRY,
            ),
            {},
        ),
        FailureKind.DAILY_QUOTA,
    ),
    (
        "400 API_KEY_INVALID",
        (
            400,
            _gemini(
                400,
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key.",
                _info("API_KEY_INVALID"),
            ),
            {},
        ),
        FailureKind.AUTH,
    ),
    (
        "400 PERMISSION_DENIED API_KEY_SERVICE_BLOCKED",
        (
            400,
            _gemini(
                400,
                "PERMISSION_DENIED",
                "Requests to this API are blocked.",
                _info("API_KEY_SERVICE_BLOCKED"),
            ),
            {},
        ),
        FailureKind.AUTH,
    ),
    (
        "400 INVALID_ARGUMENT API_KEY_SERVICE_BLOCKED",
        (
            400,
            _gemini(
                400,
                "INVALID_ARGUMENT",
                "Requests to this API are blocked.",
                _info("API_KEY_SERVICE_BLOCKED"),
            ),
            {},
        ),
        FailureKind.AUTH,
    ),
    (
        "403 suspended",
        (
            403,
            _gemini(
                403,
                "PERMISSION_DENIED",
                "Permission denied: Consumer has been suspended.",
                _info("CONSUMER_SUSPENDED"),
            ),
            {},
        ),
        FailureKind.AUTH,
    ),
    (
        "500 internal",
        (500, _gemini(500, "INTERNAL", "An internal error has occurred."), {}),
        FailureKind.SERVER,
    ),
    (
        "503 overloaded",
        (503, _gemini(503, "UNAVAILABLE", "The model is overloaded."), {}),
        FailureKind.SERVER,
    ),
    (
        "504 deadline",
        (504, _gemini(504, "DEADLINE_EXCEEDED", "Deadline expired."), {}),
        FailureKind.TIMEOUT,
    ),
    (
        "400 invalid",
        (400, _gemini(400, "INVALID_ARGUMENT", "Invalid JSON payload received."), {}),
        FailureKind.INVALID_REQUEST,
    ),
]


def _openai(message: str, type_: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


#: The failure table's OpenAI answers.
OPENAI: list[tuple[str, Answer, FailureKind]] = [
    (
        "429 Retry-After",
        (
            429,
            _openai("Rate limit reached for requests per min.", "requests", "rate_limit_exceeded"),
            {"Retry-After": "7"},
        ),
        FailureKind.RATE_LIMIT,
    ),
    (
        "429 retry-after-ms",
        (
            429,
            _openai("Rate limit reached.", "tokens", "rate_limit_exceeded"),
            {"retry-after-ms": "1500"},
        ),
        FailureKind.RATE_LIMIT,
    ),
    (
        "429 per-day",
        (
            429,
            _openai(
                "Rate limit reached for requests per day (RPD).", "requests", "rate_limit_exceeded"
            ),
            {},
        ),
        FailureKind.DAILY_QUOTA,
    ),
    (
        "401 invalid key",
        (
            401,
            _openai("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
            {},
        ),
        FailureKind.AUTH,
    ),
    (
        "403 deactivated",
        (
            403,
            _openai(
                "This account has been deactivated.", "invalid_request_error", "account_deactivated"
            ),
            {},
        ),
        FailureKind.AUTH,
    ),
    (
        "500 server",
        (500, _openai("The server had an error.", "server_error", None), {}),
        FailureKind.SERVER,
    ),
    (
        "503 overloaded",
        (503, _openai("The engine is currently overloaded.", "server_error", None), {}),
        FailureKind.SERVER,
    ),
    (
        "400 context too long",
        (
            400,
            _openai(
                "This model's maximum context length is 8192 tokens.",
                "invalid_request_error",
                "context_length_exceeded",
            ),
            {},
        ),
        FailureKind.INVALID_REQUEST,
    ),
]

RESET = "reset"
HANG = "hang"


class _Canned(BaseHTTPRequestHandler):
    answer: Answer | str = RESET

    def log_message(self, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        answer = type(self).answer
        if answer == RESET:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            return
        if answer == HANG:
            time.sleep(1.5)
            self.connection.close()
            return
        assert not isinstance(answer, str)
        status, body, headers = answer
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, type[_Canned]]]:
    handler = type("Handler", (_Canned,), {})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", handler
    srv.shutdown()
    srv.server_close()


def _raised(call: Callable[[], Any]) -> BaseException:
    try:
        call()
    except Exception as exc:
        return exc
    raise AssertionError("the SDK call did not fail")


def _lc_gemini(url: str) -> BaseException:
    from langchain_google_genai import ChatGoogleGenerativeAI

    llm = ChatGoogleGenerativeAI(
        model="gemini-2.5-flash", api_key=SECRET, base_url=url, max_retries=1, timeout=0.5
    )
    return _raised(lambda: llm.invoke("hi"))


def _litellm_gemini(url: str) -> BaseException:
    import litellm

    return _raised(
        lambda: litellm.completion(
            model="gemini/gemini-2.5-flash",
            messages=[{"role": "user", "content": "hi"}],
            api_key=SECRET,
            api_base=url,
            num_retries=0,
            timeout=0.5,
        )
    )


def _lc_openai(url: str) -> BaseException:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="gpt-4o-mini", api_key=SECRET, base_url=url, max_retries=0, timeout=0.5)
    return _raised(lambda: llm.invoke("hi"))


def _litellm_openai(url: str) -> BaseException:
    import litellm

    return _raised(
        lambda: litellm.completion(
            model="openai/gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            api_key=SECRET,
            api_base=url,
            num_retries=0,
            max_retries=0,
            timeout=0.5,
        )
    )


def _both(
    server: tuple[str, type[_Canned]],
    answer: Answer | str,
    lc: Callable[[str], BaseException],
    lite: Callable[[str], BaseException],
) -> tuple[Classified, Classified]:
    url, handler = server
    handler.answer = answer
    return langchain_classify(lc(url)), litellm_classify(lite(url))


@pytest.mark.parametrize(("name", "answer", "kind"), GEMINI, ids=[g[0] for g in GEMINI])
def test_gemini_answer_means_the_same_in_every_face(
    server: tuple[str, type[_Canned]], name: str, answer: Answer, kind: FailureKind
) -> None:
    lc, lite = _both(server, answer, _lc_gemini, _litellm_gemini)
    assert lc == lite
    assert lc.kind is kind and lc.status == answer[0]
    if "RetryInfo" in name or "per-day" in name:
        assert lc.retry_after == 17.0


@pytest.mark.parametrize(("name", "answer", "kind"), OPENAI, ids=[o[0] for o in OPENAI])
def test_openai_answer_means_the_same_in_every_face(
    server: tuple[str, type[_Canned]], name: str, answer: Answer, kind: FailureKind
) -> None:
    lc, lite = _both(server, answer, _lc_openai, _litellm_openai)
    assert lc == lite
    assert lc.kind is kind and lc.status == answer[0]
    if name == "429 Retry-After":
        assert lc.retry_after == 7.0
    if name == "429 retry-after-ms":
        assert lc.retry_after == 1.5


@pytest.mark.parametrize(
    ("fault", "kind"), [(RESET, FailureKind.SERVER), (HANG, FailureKind.TIMEOUT)]
)
@pytest.mark.parametrize("provider", ["gemini", "openai"])
def test_no_answer_means_the_same_in_every_face(
    server: tuple[str, type[_Canned]], fault: str, kind: FailureKind, provider: str
) -> None:
    pair = (_lc_gemini, _litellm_gemini) if provider == "gemini" else (_lc_openai, _litellm_openai)
    lc, lite = _both(server, fault, *pair)
    assert lc == lite
    assert lc.kind is kind


# -- no secret reachable from what the library raises ------------------------------------


def _reachable_secrets(root: BaseException, secret: str) -> list[str]:
    """Paths from ``root`` to any value holding ``secret`` (cause, context, args, attrs)."""
    found: list[str] = []
    seen: set[int] = set()
    todo: list[tuple[str, Any]] = [("exc", root)]
    while todo and len(seen) < 5000:
        path, node = todo.pop()
        if isinstance(node, (str, bytes)):
            text = node.decode("utf-8", "replace") if isinstance(node, bytes) else node
            if secret in text:
                found.append(path)
            continue
        if node is None or id(node) in seen or isinstance(node, (int, float, bool)):
            continue
        seen.add(id(node))
        if isinstance(node, BaseException):
            todo += [
                (f"{path}.__cause__", node.__cause__),
                (f"{path}.__context__", node.__context__),
            ]
            todo += [(f"{path}.args[{i}]", a) for i, a in enumerate(node.args)]
            todo.append((f"{path}.str", str(node)))
        if isinstance(node, dict):
            todo += [(f"{path}[{k!r}]", v) for k, v in node.items()]
            continue
        if isinstance(node, (list, tuple, set)):
            todo += [(f"{path}[{i}]", v) for i, v in enumerate(node)]
            continue
        headers = getattr(node, "headers", None)
        if headers is not None and hasattr(headers, "items"):
            todo += [(f"{path}.headers[{k!r}]", v) for k, v in headers.items()]
        for name, value in (getattr(node, "__dict__", None) or {}).items():
            if not callable(value) or isinstance(value, BaseException):
                todo.append((f"{path}.{name}", value))
    return found


@pytest.mark.parametrize(
    ("provider", "answer"),
    [
        ("gemini", GEMINI[2][1]),
        ("gemini", GEMINI[9][1]),
        ("openai", OPENAI[3][1]),
        ("openai", OPENAI[7][1]),
        ("openai", OPENAI[5][1]),
    ],
)
@pytest.mark.parametrize("shell", ["sync", "async"])
def test_no_secret_reachable_from_the_langchain_face_errors(
    server: tuple[str, type[_Canned]], provider: str, answer: Answer, shell: str
) -> None:
    import asyncio
    import uuid

    from rotating_llm import APIKey, KeyManager, Settings
    from rotating_llm.langchain import RotatingChatModel
    from rotating_llm.secrets import EnvSecretStore

    url, handler = server
    handler.answer = answer
    secret = f"sk-scrub-{uuid.uuid4().hex}"
    key = APIKey(key_id="k0", model_name="m", provider=provider, rpm=100, tpm=100_000, base_url=url)
    manager = KeyManager(
        [key],
        settings=Settings(redis_url=None, key_prefix=f"s{uuid.uuid4().hex[:8]}:", max_wait=0),
        secret_store=EnvSecretStore({"API_KEY_K0": secret}),
    )
    llm = RotatingChatModel(model="m", key_manager=manager, max_attempts=1, timeout=2)

    def call() -> Any:
        return llm.invoke("hi") if shell == "sync" else asyncio.run(llm.ainvoke("hi"))

    with pytest.raises(Exception) as info:
        call()
    assert info.value.__cause__ is not None or info.value.__context__ is not None
    assert _reachable_secrets(info.value, secret) == []


def test_the_walker_finds_a_secret_in_a_chained_request() -> None:
    import httpx

    request = httpx.Request("POST", "http://x", headers={"Authorization": "Bearer sk-walk"})
    inner = RuntimeError("boom")
    inner.request = request  # type: ignore[attr-defined]
    outer = ValueError("outer")
    outer.__cause__ = inner
    assert "exc.__cause__.request.headers['authorization']" in _reachable_secrets(outer, "sk-walk")


@pytest.mark.parametrize(
    ("provider", "answer"),
    [("gemini", GEMINI[2][1]), ("openai", OPENAI[3][1]), ("openai", OPENAI[7][1])],
)
@pytest.mark.parametrize("shell", ["sync", "async"])
def test_no_secret_reachable_from_the_litellm_face_errors(
    server: tuple[str, type[_Canned]], provider: str, answer: Answer, shell: str
) -> None:
    """A ``Router`` with the face installed: what the call raises (LiteLLM's error of the
    provider's answer, then the face's ``PoolExhaustedError`` once the key is out of
    rotation) holds the deployment's key nowhere, as soon as it is raised."""
    import asyncio
    import uuid

    import litellm

    from rotating_llm.litellm import install

    url, handler = server
    handler.answer = answer
    secret = f"sk-scrub-{uuid.uuid4().hex}"
    model = "gemini/gemini-2.5-flash" if provider == "gemini" else "openai/gpt-4o-mini"
    params = {"model": model, "api_key": secret, "api_base": url, "rpm": 100, "timeout": 2}
    router = litellm.Router(
        model_list=[{"model_name": "pool", "litellm_params": params, "model_info": {"id": "d0"}}],
        num_retries=0,
    )
    installed = install(router, redis_url=None, key_prefix=f"s{uuid.uuid4().hex[:8]}:", max_wait=0)
    messages = [{"role": "user", "content": "hi"}]

    def call() -> Any:
        if shell == "sync":
            return router.completion(model="pool", messages=messages)
        return asyncio.run(router.acompletion(model="pool", messages=messages))

    try:
        names = []
        for _ in range(2):  # the provider's answer, then the pool (the key failed)
            with pytest.raises(Exception) as info:
                call()
            # at once: LiteLLM runs the face's failure callback before it raises
            assert _reachable_secrets(info.value, secret) == [], type(info.value).__name__
            names.append(type(info.value).__name__)
        if answer is not OPENAI[7][1]:  # (a context-window error leaves the key in)
            assert names[-1] == "PoolExhaustedError", names
    finally:
        installed.close()


@pytest.mark.parametrize("shell", ["sync", "async"])
def test_the_key_is_scrubbed_even_when_classifying_raises(
    server: tuple[str, type[_Canned]], shell: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The LiteLLM face's failure callback scrubs the key from the error before anything
    that may raise: a classifier failing on an odd exception leaves no key in the chain."""
    import asyncio
    import uuid

    import litellm

    from rotating_llm.litellm import _callback, install

    def broken(exc: BaseException) -> Classified:
        raise ValueError("classifier broke")

    monkeypatch.setattr(_callback, "classify", broken)
    url, handler = server
    handler.answer = OPENAI[3][1]
    secret = f"sk-scrub-{uuid.uuid4().hex}"
    params = {"model": "openai/gpt-4o-mini", "api_key": secret, "api_base": url, "timeout": 2}
    router = litellm.Router(
        model_list=[{"model_name": "pool", "litellm_params": params, "model_info": {"id": "d0"}}],
        num_retries=0,
    )
    installed = install(router, redis_url=None, key_prefix=f"s{uuid.uuid4().hex[:8]}:", max_wait=0)
    messages = [{"role": "user", "content": "hi"}]

    def call() -> Any:
        if shell == "sync":
            return router.completion(model="pool", messages=messages)
        return asyncio.run(router.acompletion(model="pool", messages=messages))

    try:
        with pytest.raises(Exception) as info:
            call()
        assert type(info.value).__name__ != "PoolExhaustedError"
        assert _reachable_secrets(info.value, secret) == [], type(info.value).__name__
    finally:
        installed.close()
