"""The aiohttp application of the simulator and the request flow shared by both dialects."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from rotating_llm.testing import _gemini, _openai
from rotating_llm.testing._faults import ERROR_FAULTS, Fault, FaultRule

if TYPE_CHECKING:
    from rotating_llm.testing._reply import Plan
    from rotating_llm.testing._state import State

__all__ = ["Simulator", "open_site"]

Answer = tuple[int, Any, dict[str, str]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_DEFAULT_HANG = 300.0
_MALFORMED = {
    "gemini": b'{"candidates": [{"content": {"parts": [{"text": "You sa',
    "openai": b'{"id": "chatcmpl-fake", "object": "chat.completion", "choices": [{"mess',
}


def _json(answer: Answer) -> web.Response:
    status, body, headers = answer
    return web.Response(
        status=status,
        body=json.dumps(body, ensure_ascii=False).encode("utf-8"),
        content_type="application/json",
        headers=headers,
    )


def _reset_connection(request: web.Request) -> None:
    """Abort the TCP connection with an RST (no HTTP answer)."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class Simulator:
    """Serves both dialects from one :class:`State`.

    Args:
        state: Keys, limits, faults and stats.
    """

    def __init__(self, state: State) -> None:
        self.state = state
        self.stopping = asyncio.Event()

    def app(self) -> web.Application:
        """Build the aiohttp application."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/{version}/models/{tail:.+}", self._counted(self.gemini))
        app.router.add_post("/v1/chat/completions", self._counted(self.openai))
        app.router.add_post("/chat/completions", self._counted(self.openai))
        app.router.add_get("/{version}/models/{model}", self.gemini_model)
        app.router.add_get("/v1/models", self.openai_models)
        app.router.add_get("/models", self.openai_models)
        app.router.add_get("/_fake/health", self.health)
        app.router.add_get("/_fake/stats", self.stats)
        app.router.add_post("/_fake/reset", self.reset)
        app.router.add_post("/_fake/reset_stats", self.reset_stats)
        app.router.add_post("/_fake/control", self.control)
        return app

    def _counted(self, handler: Handler) -> Handler:
        async def counted(request: web.Request) -> web.StreamResponse:
            self.state.enter()
            try:
                return await handler(request)
            finally:
                self.state.leave()

        return counted

    # -- admin --------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        """``GET /_fake/health``."""
        return web.json_response({"ok": True})

    async def stats(self, request: web.Request) -> web.Response:
        """``GET /_fake/stats``: counters per key fingerprint."""
        return web.json_response({"keys": self.state.stats(), "server": self.state.server_stats()})

    async def reset(self, request: web.Request) -> web.Response:
        """``POST /_fake/reset``: forget counters, windows, faults and key states."""
        self.state.reset()
        return web.json_response({"ok": True})

    async def reset_stats(self, request: web.Request) -> web.Response:
        """``POST /_fake/reset_stats``: zero the counters only."""
        self.state.reset_stats()
        return web.json_response({"ok": True})

    async def control(self, request: web.Request) -> web.Response:
        """``POST /_fake/control`` with ``{"op": name, "args": {...}}``."""
        try:
            body = await request.json()
            result = self.state.control(str(body["op"]), dict(body.get("args") or {}))
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"result": result})

    # -- dialects -----------------------------------------------------------

    async def gemini(self, request: web.Request) -> web.StreamResponse:
        """``POST /{v1,v1beta}/models/{model}:{method}`` (generate, stream, countTokens)."""
        model, _, method = request.match_info["tail"].rpartition(":")
        model = model.removeprefix("models/")
        key = (request.headers.get("x-goog-api-key") or request.query.get("key") or "").strip()
        if method not in ("generateContent", "streamGenerateContent", "countTokens"):
            return _json(_gemini.not_found(model))
        problem = self.state.key_problem(key)
        if problem == "missing":
            return _json(_gemini.missing_key())
        if method == "countTokens":
            if problem is not None:
                return _json(
                    _gemini.invalid_key() if problem == "invalid" else _gemini.suspended(key)
                )
            body = await self._body(request)
            if body is None:
                return _json(_gemini.bad_request("the body is not a JSON object"))
            inner = body.get("generateContentRequest")
            total = _gemini.count_request_tokens(inner if isinstance(inner, dict) else body)
            return web.json_response({"totalTokens": total})
        self.state.record(key, requests=1)
        if problem is not None:
            self.state.record(key, auth_errors=1)
            return _json(_gemini.invalid_key() if problem == "invalid" else _gemini.suspended(key))
        return await self._serve(request, "gemini", key, model, method == "streamGenerateContent")

    async def gemini_model(self, request: web.Request) -> web.Response:
        """``GET /{v1,v1beta}/models/{model}`` (``models.get``: checks the key, no quota)."""
        model = request.match_info["model"]
        key = (request.headers.get("x-goog-api-key") or request.query.get("key") or "").strip()
        problem = self.state.key_problem(key)
        if problem == "missing":
            return _json(_gemini.missing_key())
        self.state.record(key, metadata=1)
        if problem is not None:
            return _json(_gemini.invalid_key() if problem == "invalid" else _gemini.suspended(key))
        return web.json_response(
            {"name": f"models/{model}", "displayName": model, "inputTokenLimit": 1048576}
        )

    async def openai_models(self, request: web.Request) -> web.Response:
        """``GET /v1/models`` (checks the key, no quota)."""
        auth = request.headers.get("Authorization", "")
        key = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        problem = self.state.key_problem(key)
        if problem == "missing" or not key:
            return _json(_openai.missing_key())
        self.state.record(key, metadata=1)
        if problem is not None:
            return _json(_openai.invalid_key(key) if problem == "invalid" else _openai.suspended())
        return web.json_response(
            {
                "object": "list",
                "data": [{"id": "fake-model", "object": "model", "owned_by": "fake"}],
            }
        )

    async def openai(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/chat/completions``."""
        auth = request.headers.get("Authorization", "")
        key = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        problem = self.state.key_problem(key)
        if problem == "missing" or not key:
            return _json(_openai.missing_key())
        self.state.record(key, requests=1)
        if problem is not None:
            self.state.record(key, auth_errors=1)
            return _json(_openai.invalid_key(key) if problem == "invalid" else _openai.suspended())
        return await self._serve(request, "openai", key, "", False)

    async def _body(self, request: web.Request) -> dict[str, Any] | None:
        try:
            body = await request.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    async def _pause(self, seconds: float) -> bool:
        """Sleep, or return early (``False``) when the server stops."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)
            return False
        return True

    async def _serve(
        self, request: web.Request, dialect: str, key: str, model: str, streaming: bool
    ) -> web.StreamResponse:
        gem = dialect == "gemini"
        body = await self._body(request)
        if body is None:
            return _json((_gemini if gem else _openai).bad_request("the body is not a JSON object"))
        rule = self.state.pick_fault(key)
        if rule is not None and rule.fault in ERROR_FAULTS:
            streaming = streaming if gem else bool(body.get("stream"))
            return await self._fault(request, dialect, key, rule, streaming)
        if (
            rule is not None
            and rule.fault is Fault.LATENCY
            and not await self._pause(rule.delay or 0.0)
        ):
            _reset_connection(request)
            return web.Response(status=503)
        try:
            if gem:
                plan = _gemini.plan(body, model, streaming=streaming)
            else:
                plan = _openai.plan(body, streaming=bool(body.get("stream")))
        except ValueError as exc:
            return _json((_gemini if gem else _openai).bad_request(str(exc)))
        admission = self.state.admit(key, plan.input_tokens, plan.output_tokens)
        # OpenAI tells every caller its live limits; Gemini's answers carry none.
        limits = {} if gem else _openai.rate_limit_headers(admission.requests, admission.tokens)
        if admission.rejection is not None:
            mod = _gemini if gem else _openai
            status, error, headers = mod.rate_limited(admission.rejection, plan.model)
            return _json((status, error, {**limits, **headers}))
        cut = rule.after_chunks if rule is not None and rule.fault is Fault.STREAM_CUT else None
        if not plan.stream:
            if cut is not None:
                _reset_connection(request)
                return web.Response(status=500)
            return _json((200, _gemini.render(plan) if gem else _openai.render(plan), limits))
        return await self._stream(request, dialect, plan, body, cut, limits)

    async def _stream(
        self,
        request: web.Request,
        dialect: str,
        plan: Plan,
        body: dict[str, Any],
        cut: int | None,
        limits: dict[str, str],
    ) -> web.StreamResponse:
        if dialect == "gemini":
            events = _gemini.stream(plan)
            if request.query.get("alt") != "sse" and cut is None:  # a JSON array, like the API
                return _json((200, events, {}))
            lines = [f"data: {json.dumps(e, ensure_ascii=False)}\r\n\r\n" for e in events]
        else:
            options = body.get("stream_options")
            usage = bool(options.get("include_usage")) if isinstance(options, dict) else False
            events = _openai.stream(plan, usage)
            lines = [f"data: {json.dumps(e, ensure_ascii=False)}\n\n" for e in events]
            lines.append("data: [DONE]\n\n")
        resp = web.StreamResponse(
            status=200,
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", **limits},
        )
        await resp.prepare(request)
        for i, line in enumerate(lines):
            if cut is not None and i >= cut:
                _reset_connection(request)
                return resp
            await resp.write(line.encode("utf-8"))
        await resp.write_eof()
        return resp

    async def _fault(
        self, request: web.Request, dialect: str, key: str, rule: FaultRule, streaming: bool
    ) -> web.StreamResponse:
        gem = dialect == "gemini"
        fault = rule.fault
        if fault is Fault.INVALID_KEY:
            return _json(_gemini.invalid_key() if gem else _openai.invalid_key(key))
        if fault is Fault.SUSPENDED:
            return _json(_gemini.suspended(key) if gem else _openai.suspended())
        if fault is Fault.SERVER_ERROR:
            return _json(_gemini.server_error() if gem else _openai.server_error())
        if fault is Fault.OVERLOADED:
            return _json(_gemini.overloaded() if gem else _openai.overloaded())
        if fault is Fault.MALFORMED_JSON and streaming:
            return web.Response(
                status=200,
                body=b"data: " + _MALFORMED[dialect] + b"\r\n\r\n",
                content_type="text/event-stream",
            )
        if fault is Fault.MALFORMED_JSON:
            return web.Response(
                status=200, body=_MALFORMED[dialect], content_type="application/json"
            )
        if fault is Fault.HANG:
            await self._pause(_DEFAULT_HANG if rule.delay is None else rule.delay)
        _reset_connection(request)  # RESET, or a hang that ended
        return web.Response(status=500)


async def open_site(state: State, host: str, port: int) -> tuple[web.AppRunner, Simulator, int]:
    """Start serving on ``host:port`` (0: a free port); return the runner and the port."""
    simulator = Simulator(state)
    runner = web.AppRunner(simulator.app(), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    site = web.SockSite(runner, sock, backlog=2048)
    await site.start()
    return runner, simulator, int(sock.getsockname()[1])


async def close_site(runner: web.AppRunner, simulator: Simulator) -> None:
    """Release hanging requests and stop serving."""
    simulator.stopping.set()
    await runner.cleanup()
