"""``RotatingChatModel`` with scripted provider models (a factory), on the embedded store."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.load import dumpd
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ValidationError

from rotating_llm import APIKey, KeyManager, Settings
from rotating_llm.errors import ConfigError, KeyFileError
from rotating_llm.langchain import (
    ProviderSpec,
    RotatingChatModel,
    RotatingInvalidRequestError,
)
from rotating_llm.langchain._rotation import estimate_tokens
from rotating_llm.secrets import EnvSecretStore
from rotating_llm.tokens import MEDIA_TOKENS


class Boom(Exception):
    """A provider failure the classifier reads by status."""

    def __init__(self, status: int) -> None:
        super().__init__(f"provider said {status}")
        self.status_code = status
        self.response = None
        self.body = {"error": {"message": f"status {status}", "code": None}}


class Scripted(BaseChatModel):
    """Answers from a shared script: an exception to raise, or text to reply."""

    spec: Any
    env: Any  # the test's Env, by reference: its script and call log

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        self.env.calls.append((self.spec.key_id, self.spec.api_key.get_secret_value()))
        steps = self.env.script.get(self.spec.key_id) or ["ok"]
        step = steps.pop(0) if len(steps) > 1 else steps[0]
        if callable(step):
            step = step()
        if isinstance(step, BaseException):
            raise step
        usage = {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}
        msg = AIMessage(f"{step} from {self.spec.key_id}", usage_metadata=usage)  # type: ignore[arg-type]
        return ChatResult(generations=[ChatGeneration(message=msg)])


class Env:
    def __init__(self, n: int = 3, **key: Any) -> None:
        self.keys = [
            APIKey(key_id=f"k{i}", model_name="m", provider="fake", rpm=100, tpm=10_000, **key)
            for i in range(n)
        ]
        self.environ = {f"API_KEY_K{i}": f"sk-unit-{i}-{uuid.uuid4().hex}" for i in range(n)}
        self.manager = KeyManager(
            self.keys,
            settings=Settings(redis_url=None, key_prefix=f"u{uuid.uuid4().hex[:8]}:", max_wait=0),
            secret_store=EnvSecretStore(self.environ),
        )
        self.script: dict[str, list[Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.specs: list[ProviderSpec] = []

    def factory(self, spec: ProviderSpec) -> BaseChatModel:
        self.specs.append(spec)
        return Scripted(spec=spec, env=self)

    def model(self, **kw: Any) -> RotatingChatModel:
        opts: dict[str, Any] = {"backoff_base": 0.001, "backoff_max": 0.002}
        opts.update(kw)
        return RotatingChatModel(
            model="m",
            key_manager=self.manager,
            provider_factories={"fake": self.factory},
            **opts,
        )


@pytest.fixture
def env() -> Iterator[Env]:
    e = Env()
    yield e
    e.manager.close()


def test_construction_errors_name_the_problem(env: Env) -> None:
    with pytest.raises(ConfigError, match="needs key_manager= or keys="):
        RotatingChatModel(model="m")
    with pytest.raises(ConfigError, match="not both"):
        RotatingChatModel(model="m", key_manager=env.manager, keys=env.keys)
    with pytest.raises(ConfigError, match="provider 'fake', which needs a factory"):
        RotatingChatModel(model="m", key_manager=env.manager)
    with pytest.raises(ConfigError, match="no active keys for model 'other'"):
        RotatingChatModel(
            model="other", key_manager=env.manager, provider_factories={"fake": env.factory}
        )
    with pytest.raises(ConfigError, match="pass 'temperature' directly"):
        env.model(model_kwargs={"temperature": 1})
    with pytest.raises(ConfigError, match="max_attempts"):
        env.model(max_attempts=0)
    with pytest.raises(ConfigError, match="surprise"):
        env.model(surprise=1)


def test_construction_errors_are_the_librarys_own(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"keys": [{"key_id": "a", "model_name": "m", "provider": "gemini"}]}')
    with pytest.raises(KeyFileError, match="field 'rpm': required field is missing") as info:
        RotatingChatModel(model="m", keys=str(bad))
    assert not isinstance(info.value, ValidationError)
    assert isinstance(info.value, ValueError)  # still caught by ``except ValueError``
    assert info.value.__cause__ is None and info.value.__suppress_context__
    with pytest.raises(KeyFileError, match="file not found"):
        RotatingChatModel(model="m", keys=str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match="max_attempts") as err:
        RotatingChatModel(model="m", keys=str(bad), max_attempts=0)
    assert not isinstance(err.value, ValidationError)


def test_spec_carries_parameters_and_the_keys_own_base_url() -> None:
    e = Env(2, base_url="http://key.example")
    llm = e.model(temperature=0.2, max_tokens=64, timeout=9, base_url="http://model.example")
    llm.invoke("hi")
    spec = e.specs[0]
    assert (spec.temperature, spec.max_tokens, spec.timeout) == (0.2, 64, 9)
    assert spec.base_url == "http://key.example"
    assert "sk-unit" not in repr(spec)
    e.manager.close()


def test_provider_models_are_cached_per_key(env: Env) -> None:
    llm = env.model()
    for _ in range(6):
        llm.invoke("hi")
    assert len(env.specs) == 3  # one provider model per key, reused


def test_secret_rotated_in_the_store_is_retried_with_the_new_secret() -> None:
    e = Env(1)
    old = e.environ["API_KEY_K0"]
    new = "sk-rotated-" + uuid.uuid4().hex

    def rotate_then_refuse() -> Exception:
        e.environ["API_KEY_K0"] = new  # an operator rotates the key in the vault meanwhile
        return Boom(401)

    e.script["k0"] = [rotate_then_refuse, "ok"]
    reply = e.model().invoke("hi")
    assert reply.response_metadata["attempts"] == 2
    assert e.calls == [("k0", old), ("k0", new)]
    assert not e.manager.get_key_status("k0")["disabled"]
    assert len(e.specs) == 2  # a new provider model for the new secret
    e.manager.close()


def test_key_refused_twice_is_disabled(env: Env) -> None:
    env.script["k0"] = [Boom(403)]
    llm = env.model()
    replies = [llm.invoke(f"q{i}") for i in range(4)]
    assert all(r.response_metadata["key_id"] != "k0" for r in replies)
    assert env.manager.get_key_status("k0")["disabled"]
    assert [c[0] for c in env.calls].count("k0") == 1


def test_invalid_request_is_raised_once(env: Env) -> None:
    env.script.update({k: [Boom(400)] for k in ("k0", "k1", "k2")})
    llm = env.model()
    with pytest.raises(RotatingInvalidRequestError) as info:
        llm.invoke("hi")
    assert len(env.calls) == 1 and info.value.attempts == 1
    assert isinstance(info.value.__cause__, Boom)


def test_unknown_exceptions_propagate_unchanged_and_settle_the_lease(env: Env) -> None:
    env.script.update({k: [KeyError("my bug")] for k in ("k0", "k1", "k2")})
    with pytest.raises(KeyError, match="my bug"):
        env.model().invoke("hi")
    statuses = env.manager.get_all_key_statuses()
    assert sum(s["rpm_usage"] for s in statuses) == 1
    assert not any(s["disabled"] or s["in_cooldown"] for s in statuses)


def test_max_retries_sets_attempts(env: Env) -> None:
    env.script.update({k: [Boom(500)] for k in ("k0", "k1", "k2")})
    with pytest.raises(Exception, match="after 2 attempt"):
        env.model(max_retries=1).invoke("hi")
    assert len(env.calls) == 2


def test_stream_from_a_model_without_streaming(env: Env) -> None:
    chunks = list(env.model().stream("hi"))
    text = "".join(str(c.content) for c in chunks)
    assert text.startswith("ok from k")
    assert chunks[0].response_metadata["attempts"] == 1


async def test_async_paths_with_scripted_failures(env: Env) -> None:
    env.script["k0"] = [Boom(503), "ok"]
    llm = env.model()
    replies = await llm.abatch(["a", "b", "c"])
    assert {r.response_metadata["key_id"] for r in replies} <= {"k0", "k1", "k2"}
    chunks = [c async for c in llm.astream("hi")]
    assert chunks
    await env.manager.aclose()


def test_secrets_never_in_repr_dumpd_or_metadata(env: Env) -> None:
    llm = env.model(api_key="sk-given-but-dropped")
    reply = llm.invoke("hi")
    texts = [repr(llm), json.dumps(dumpd(llm), default=str), json.dumps(reply.response_metadata)]
    texts.append(str(llm.model_dump()))
    for text in texts:
        assert "sk-given-but-dropped" not in text
        for secret in env.environ.values():
            assert secret not in text
    assert llm.api_key is None


def test_token_estimate_is_conservative() -> None:
    text = "word " * 300  # 1500 characters: ~300 real tokens
    est = estimate_tokens([HumanMessage(text)], {}, 100)
    assert est >= 300 + 100
    image = HumanMessage(
        content=[{"type": "image", "base64": "A" * 100_000, "mime_type": "image/png"}]
    )
    assert estimate_tokens([image], {}, 0) < MEDIA_TOKENS + 10  # not the base64 length
    tools = {"tools": [{"type": "function", "function": {"name": "f", "description": "word " * 200}}]}
    assert estimate_tokens([HumanMessage("hi")], tools, 0) > 100


def test_reservation_is_reconciled_to_reported_usage(env: Env) -> None:
    reply = env.model(max_tokens=500).invoke("hello " * 50)
    status = env.manager.get_key_status(reply.response_metadata["key_id"])
    assert status["tpm_usage"] == 5  # the scripted usage, not the 600-token estimate


def test_ls_params_follow_the_override(env: Env) -> None:
    llm = env.model(temperature=0.5, max_tokens=10, stop=["x"])
    params = llm._get_ls_params(model="other-pool")
    assert params["ls_provider"] == "rotating_llm"
    assert params["ls_model_name"] == "other-pool"
    assert params["ls_temperature"] == 0.5 and params["ls_max_tokens"] == 10
    assert params["ls_stop"] == ["x"]


def test_a_failing_factory_is_a_config_error_and_sends_nothing(env: Env) -> None:
    from rotating_llm import ConfigError

    def broken(spec: ProviderSpec) -> BaseChatModel:
        raise TypeError(f"bad option for {spec.api_key.get_secret_value()}")

    llm = RotatingChatModel(model="m", key_manager=env.manager, provider_factories={"fake": broken})
    with pytest.raises(ConfigError, match="cannot build the 'fake' chat model") as info:
        llm.invoke("hi")
    assert "sk-unit" not in str(info.value)
    chained = info.value.__cause__
    assert isinstance(chained, TypeError)  # the SDK's own error stays chained, scrubbed
    assert "sk-unit" not in str(chained) and "sk-unit" not in repr(chained.args)
    assert sum(s["rpm_usage"] for s in env.manager.get_all_key_statuses()) == 0


def test_tools_on_a_model_without_tools_fail_before_sending(env: Env) -> None:
    llm = env.model().bind_tools([{"name": "x", "description": "y", "parameters": {}}])
    with pytest.raises(NotImplementedError):  # the scripted provider model has no tools
        llm.invoke("hi")
    assert env.calls == []
    assert sum(s["rpm_usage"] for s in env.manager.get_all_key_statuses()) == 0


def test_provider_models_are_cached_per_shaping_options() -> None:
    """A copy with another temperature must not reuse the model built for the first."""
    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from pydantic import SecretStr

    from rotating_llm.langchain import ProviderSpec
    from rotating_llm.langchain._providers import ProviderCache

    built: list[ProviderSpec] = []

    def factory(spec: ProviderSpec) -> FakeListChatModel:
        built.append(spec)
        return FakeListChatModel(responses=["ok"])

    cache = ProviderCache({"fake": factory})
    base = {"key_id": "k", "provider": "fake", "model": "m", "api_key": SecretStr("sk-cache-1")}
    first = cache.get(ProviderSpec(**base, temperature=0.1))
    again = cache.get(ProviderSpec(**base, temperature=0.1))
    warmer = cache.get(ProviderSpec(**base, temperature=0.9))
    longer = cache.get(ProviderSpec(**base, temperature=0.1, max_tokens=50))
    assert first is again
    assert warmer is not first and longer is not first
    assert [s.temperature for s in built] == [0.1, 0.9, 0.1]
