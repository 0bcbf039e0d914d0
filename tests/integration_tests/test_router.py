"""``RequestRouter`` against the simulator and a real Redis: results, every error_type,
fallbacks, no partial turn, rotation on and off, async twins, health with Redis down."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rotating_llm import APIKey, KeyManager, Settings
from rotating_llm.router import ERROR_TYPES, RequestRouter, get_request_router
from rotating_llm.secrets import EnvSecretStore
from rotating_llm.testing import FakeProvider

#: google-genai's async client subclasses aiohttp.ClientSession, which aiohttp deprecates.
AIOHTTP = "ignore:Inheritance class AiohttpClientSession from ClientSession:DeprecationWarning"
pytestmark = [pytest.mark.redis, pytest.mark.filterwarnings(AIOHTTP)]

FLASH = "gemini-2.5-flash"
PRO = "gemini-2.5-pro"
#: The send behaviour tests run over both shells of the one send flow.
SHELLS = pytest.mark.parametrize("shell", ["sync", "async"])
FAST = {"backoff_base": 0.01, "backoff_max": 0.05}


@dataclass
class Env:
    provider: FakeProvider
    keys: list[APIKey]
    secrets: dict[str, str]
    manager: KeyManager
    router: RequestRouter
    shell: str = "sync"

    def send_chat(self, *args: Any, **kw: Any) -> dict[str, Any]:
        """``send_chat`` through the sync shell, or ``asend_chat`` on a fresh event loop."""
        return self._send("send_chat", args, kw)

    def send_one_shot(self, *args: Any, **kw: Any) -> dict[str, Any]:
        """``send_one_shot``, or its async twin, as :meth:`send_chat`."""
        return self._send("send_one_shot", args, kw)

    def _send(self, name: str, args: tuple[Any, ...], kw: dict[str, Any]) -> dict[str, Any]:
        if self.shell == "sync":
            result: dict[str, Any] = getattr(self.router, name)(*args, **kw)
            return result

        async def run() -> dict[str, Any]:
            try:
                out: dict[str, Any] = await getattr(self.router, "a" + name)(*args, **kw)
                return out
            finally:
                await self.router.aclose()

        return asyncio.run(run())

    def secret(self, key_id: str) -> str:
        return self.secrets[f"API_KEY_{key_id.upper().replace('-', '_')}"]

    def no_secret_in(self, *objs: object) -> None:
        for obj in objs:
            text = repr(obj)
            for value in self.secrets.values():
                assert value not in text


@contextmanager
def router_env(
    redis_url: str,
    prefix: str,
    *,
    flash: int = 2,
    pro: int = 0,
    rpm: int = 100,
    pro_rpm: int = 100,
    tpm: int = 1_000_000,
    rotation: bool | None = None,
    drop_secrets: bool = False,
    chat: dict[str, Any] | None = None,
    shell: str = "sync",
    **router_kw: Any,
) -> Iterator[Env]:
    with FakeProvider(window=60.0) as fp:
        keys = [
            APIKey(key_id=f"flash-{i}", model_name=FLASH, provider="gemini", rpm=rpm, tpm=tpm,
                   base_url=fp.url)
            for i in range(flash)
        ] + [
            APIKey(key_id=f"pro-{i}", model_name=PRO, provider="gemini", rpm=pro_rpm, tpm=tpm,
                   base_url=fp.url)
            for i in range(pro)
        ]  # fmt: skip
        secrets = {
            f"API_KEY_{k.key_id.upper().replace('-', '_')}": f"sk-rt-{uuid.uuid4().hex}"
            for k in keys
        }
        flag = {} if rotation is None else {"router_enabled": rotation}  # None: the default
        settings = Settings(redis_url=redis_url, key_prefix=prefix, max_wait=0, **flag)
        store = EnvSecretStore({} if drop_secrets else secrets)
        km = KeyManager(keys, settings=settings, secret_store=store)
        router = RequestRouter(km, chat_model_options={**FAST, **(chat or {})}, **router_kw)
        try:
            yield Env(fp, keys, secrets, km, router, shell)
        finally:
            km.close()


@SHELLS
def test_one_shot_result_has_every_field(redis_url: str, prefix: str, shell: str) -> None:
    with router_env(redis_url, prefix, shell=shell) as env:
        out = env.send_one_shot("Hello! Can you confirm?", model_preference=FLASH)
        assert out["success"] is True
        assert out["content"] == "You said: Hello! Can you confirm?"
        assert out["model"] == FLASH
        assert out["key_id"] in {"flash-0", "flash-1"}
        assert out["attempts"] == 1
        assert out["latency_ms"] > 0
        tokens = out["tokens"]
        assert tokens["prompt"] > 0 and tokens["completion"] > 0
        assert tokens["total"] == tokens["prompt"] + tokens["completion"]
        assert "error" not in out and "fallback_from" not in out
        env.no_secret_in(out)


@SHELLS
def test_chat_keeps_the_conversation_across_keys(redis_url: str, prefix: str, shell: str) -> None:
    # one request per key: the conversation's key is full, so its second turn moves
    with router_env(redis_url, prefix, rpm=1, shell=shell) as env:
        r = env.router
        first = env.send_chat("conv-a", "Plan the work", FLASH, 256, system_prompt="Be brief.")
        second = env.send_chat("conv-a", "What's next?", FLASH)
        assert first["success"] and second["success"]
        assert {first["key_id"], second["key_id"]} == {"flash-0", "flash-1"}  # rotated
        # the second call carried the history: more prompt tokens than its own prompt
        assert second["tokens"]["prompt"] > first["tokens"]["prompt"]
        msgs = r.get_conversation("conv-a")
        assert [m["type"] for m in msgs] == ["system", "human", "ai", "human", "ai"]
        assert msgs[4]["data"]["content"] == "You said: What's next?"
        assert msgs[4]["data"]["response_metadata"]["key_id"] == second["key_id"]
        meta = r.conversation_store.get_metadata("conv-a")
        assert meta is not None
        assert meta["turn_count"] == 2 and meta["message_count"] == 5
        assert meta["last_model"] == FLASH and meta["last_key_id"] == second["key_id"]
        assert meta["total_tokens"] == first["tokens"]["total"] + second["tokens"]["total"]
        assert r.truncate_conversation("conv-a", keep_last_n=2) == 3
        assert len(r.get_conversation("conv-a")) == 2


def test_rotation_off_uses_the_first_key_only(redis_url: str, prefix: str) -> None:
    with router_env(redis_url, prefix, rpm=2, rotation=False) as env:
        results = [env.router.send_one_shot(f"q{i}", FLASH) for i in range(3)]
        assert [r["success"] for r in results] == [True, True, False]
        assert {r["key_id"] for r in results[:2]} == {"flash-0"}
        assert results[2]["error_type"] == "rate_limited"
        assert env.provider.key_stats(env.secret("flash-1")).served == 0


def test_rotation_on_by_default_spreads_over_the_pool(redis_url: str, prefix: str) -> None:
    with router_env(redis_url, prefix, rpm=2) as env:  # LLM_MULTI_KEY_ROUTER_ENABLED unset
        assert env.router.rotation is True
        results = [env.router.send_one_shot(f"q{i}", FLASH) for i in range(4)]
        assert all(r["success"] for r in results)
        assert sorted(r["key_id"] for r in results) == ["flash-0", "flash-0", "flash-1", "flash-1"]


# -- every error_type ------------------------------------------------------------------


@SHELLS
def test_rate_limited_with_retry_after_and_no_partial_turn(
    redis_url: str, prefix: str, shell: str
) -> None:
    with router_env(redis_url, prefix, shell=shell, flash=1, rpm=1) as env:
        r = env.router
        assert env.send_chat("c", "one", FLASH)["success"]
        before = r.get_conversation("c")
        out = env.send_chat("c", "two", FLASH, max_wait=0)
        assert out["success"] is False and out["content"] is None
        assert out["error_type"] == "rate_limited"
        assert out["retry_after"] is not None and out["retry_after"] > 0
        assert "flash-0" in out["error"]
        assert r.get_conversation("c") == before  # nothing written
        meta = r.conversation_store.get_metadata("c")
        assert meta is not None and meta["turn_count"] == 1
        env.no_secret_in(out)


@pytest.mark.parametrize("how", ["revoke", "suspend"])
def test_auth_when_every_key_is_refused(redis_url: str, prefix: str, how: str) -> None:
    with router_env(redis_url, prefix, chat={"max_attempts": 5}) as env:
        for key in env.keys:
            getattr(env.provider, how)(env.secret(key.key_id))
        out = env.router.send_chat("auth-c", "hi", FLASH)
        # both keys were tried and disabled; then the pool has no key left at all
        assert out["success"] is False
        assert out["error_type"] == "rate_limited" and out["retry_after"] is None
        assert out["attempts"] == 2
        assert "disabled" in out["error"]
        statuses = {s["key_id"]: s for s in env.manager.get_all_key_statuses()}
        assert all(s["disabled"] for s in statuses.values())
        assert env.router.get_conversation("auth-c") == []
        env.no_secret_in(out)


@SHELLS
def test_auth_error_type_when_attempts_run_out(redis_url: str, prefix: str, shell: str) -> None:
    with router_env(redis_url, prefix, shell=shell, flash=3, chat={"max_attempts": 2}) as env:
        for key in env.keys:
            env.provider.revoke(env.secret(key.key_id))
        out = env.send_one_shot("hi", FLASH)
        assert out["error_type"] == "auth"
        assert out["attempts"] == 2
        assert out["key_id"] in {"flash-0", "flash-1", "flash-2"}
        env.no_secret_in(out)


@SHELLS
def test_invalid_request(redis_url: str, prefix: str, shell: str) -> None:
    with router_env(redis_url, prefix, shell=shell, tpm=1000) as env:
        too_large = env.send_one_shot("hi", FLASH, expected_completion_tokens=5000)
        assert too_large["error_type"] == "invalid_request"
        assert "never be served" in too_large["error"]
        bad_conv = env.send_chat("bad{id}", "hi", FLASH)
        assert bad_conv["error_type"] == "invalid_request"
        unknown = env.send_one_shot("hi", "no-such-model")
        assert unknown["error_type"] == "invalid_request"
        assert env.provider.server_stats()["handled"] == 0


@SHELLS
def test_provider_error_after_bounded_retries(redis_url: str, prefix: str, shell: str) -> None:
    with router_env(redis_url, prefix, shell=shell, chat={"max_attempts": 3}) as env:
        env.provider.inject("overloaded")
        out = env.send_chat("pe", "hi", FLASH)
        assert out["error_type"] == "provider_error"
        assert out["attempts"] == 3
        assert "503" in out["error"] or "overloaded" in out["error"].lower()
        assert env.router.get_conversation("pe") == []


def test_timeout(redis_url: str, prefix: str) -> None:
    with router_env(redis_url, prefix, chat={"max_attempts": 2, "timeout": 0.3}) as env:
        env.provider.inject("hang", delay=3)
        out = env.router.send_one_shot("hi", FLASH)
        assert out["error_type"] == "timeout"
        assert out["attempts"] == 2


def test_secret_store(redis_url: str, prefix: str) -> None:
    with router_env(redis_url, prefix, drop_secrets=True) as env:
        out = env.router.send_chat("ss", "hi", FLASH)
        assert out["error_type"] == "secret_store"
        assert "API_KEY_FLASH" in out["error"]
        assert env.router.get_conversation("ss") == []
        health = env.router.health_check()
        assert health["healthy"] is False and health["key_manager"]["secrets_ok"] is False


def test_error_types_are_documented() -> None:
    assert set(ERROR_TYPES) >= {
        "rate_limited", "auth", "invalid_request", "provider_error", "timeout", "secret_store",
    }  # fmt: skip


# -- fallbacks -------------------------------------------------------------------------


def test_fallback_when_the_preferred_pool_is_out_of_capacity(redis_url: str, prefix: str) -> None:
    fallbacks = {PRO: [FLASH]}
    with router_env(redis_url, prefix, flash=1, pro=1, pro_rpm=1, fallbacks=fallbacks) as env:
        r = env.router
        first = r.send_chat("fb", "plan", PRO)
        assert first["model"] == PRO and "fallback_from" not in first
        second = r.send_chat("fb", "plan more", PRO)
        assert second["success"] is True
        assert second["model"] == FLASH and second["fallback_from"] == PRO
        assert second["key_id"] == "flash-0"
        meta = r.conversation_store.get_metadata("fb")
        assert meta is not None and meta["last_model"] == FLASH
        # per-call override: no fallbacks at all
        none = r.send_one_shot("x", PRO, fallback_models=[])
        assert none["error_type"] == "rate_limited" and none["model"] == PRO


def test_fallback_models_argument_and_all_exhausted(redis_url: str, prefix: str) -> None:
    with router_env(redis_url, prefix, flash=1, pro=1, rpm=1, pro_rpm=1) as env:
        r = env.router
        assert r.send_one_shot("a", FLASH)["success"]
        via = r.send_one_shot("b", FLASH, fallback_models=[PRO])
        assert via["model"] == PRO and via["fallback_from"] == FLASH
        out = r.send_one_shot("c", FLASH, fallback_models=[PRO])
        assert out["success"] is False and out["error_type"] == "rate_limited"
        assert out["model"] == FLASH and out["retry_after"] > 0


def test_fallback_is_not_used_for_other_failures(redis_url: str, prefix: str) -> None:
    fallbacks = {FLASH: [PRO]}
    with router_env(redis_url, prefix, flash=1, pro=1, fallbacks=fallbacks) as env:
        env.provider.inject("server_error", key=env.secret("flash-0"))
        out = env.router.send_one_shot("x", FLASH, max_wait=0)
        assert out["error_type"] == "provider_error" and out["model"] == FLASH
        assert env.provider.key_stats(env.secret("pro-0")).served == 0


# -- async, health, import -------------------------------------------------------------


async def test_async_twins(redis_url: str, prefix: str) -> None:
    with router_env(redis_url, prefix, rpm=1) as env:
        r = env.router
        try:
            one = await r.asend_one_shot("hi", FLASH, temperature=0.2)
            chat = await r.asend_chat("ac", "hello", FLASH, system_prompt="sys")
            refused = await r.asend_chat("ac", "again", FLASH)
            msgs = await r.conversation_store.aget_messages("ac")
        finally:
            await r.aclose()
        assert one["success"] and chat["success"]
        assert {one["key_id"], chat["key_id"]} == {"flash-0", "flash-1"}
        assert refused["error_type"] == "rate_limited"
        assert [m["type"] for m in msgs] == ["system", "human", "ai"]


def test_health_check_fails_when_redis_is_down(prefix: str) -> None:
    from _redis_server import RedisProcess

    server = RedisProcess()
    server.start()
    try:
        with router_env(server.url, prefix) as env:
            up = env.router.health_check()
            assert up["healthy"] is True
            assert up["redis"]["ok"] and up["key_manager"]["healthy"]
            assert up["conversation_store"]["healthy"]
            server.stop()
            down = env.router.health_check()
            assert down["healthy"] is False
            assert down["redis"]["ok"] is False
            assert down["key_manager"]["store_ok"] is False
            assert down["conversation_store"]["healthy"] is False
            failed = env.router.send_chat("down", "hi", FLASH)
            assert failed["success"] is False and failed["error_type"] == "store"
    finally:
        server.stop()


@pytest.mark.multiprocess
def test_default_router_and_lazy_langchain(redis_url: str, prefix: str) -> None:
    with router_env(redis_url, prefix) as env:
        r = get_request_router(key_manager=env.manager, max_wait=0)
        assert get_request_router(key_manager=env.manager) is not r
        assert get_request_router() is get_request_router()
    code = (
        "import sys, rotating_llm.router, rotating_llm.tokens, rotating_llm.logs\n"
        "bad = [m for m in sys.modules if m.startswith(('langchain', 'litellm'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.multiprocess
def test_module_health_check_exit_codes(redis_url: str, prefix: str, tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    entry = {"key_id": "hc-01", "model_name": FLASH, "provider": "gemini", "rpm": 5, "tpm": 1000}
    keys.write_text(json.dumps({"keys": [entry]}))
    env = {**os.environ, "REDIS_URL": redis_url, "ROTATING_LLM_KEY_PREFIX": prefix}
    cmd = [sys.executable, "-m", "rotating_llm.router", "--health-check", "--keys", str(keys)]
    missing = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1  # the key's secret does not resolve
    assert json.loads(missing.stdout)["key_manager"]["secrets_ok"] is False
    env["API_KEY_HC_01"] = f"sk-hc-{uuid.uuid4().hex}"
    ok = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    report = json.loads(ok.stdout)
    assert report["healthy"] is True and report["redis"]["ok"] is True
    assert env["API_KEY_HC_01"] not in ok.stdout + ok.stderr
