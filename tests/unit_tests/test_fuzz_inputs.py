"""Fuzzing of the public inputs (hypothesis): only the library's own clear errors come out.

- keys files: random JSON documents, random bytes, mutated valid files, random entries
  through ``load_keys_file`` / ``parse_keys``: a list of keys or ``KeyFileError``;
- ``Settings.from_env`` with random environment values: ``Settings`` or ``ConfigError``;
- ``KeyManager.acquire`` on the embedded store with odd ``estimated_tokens``, ``max_wait``
  and model values: a lease or a ``RotatingLLMError``;
- ``ConversationStore.append_turn`` with odd ids and messages: stored or
  ``ConversationError``.

Inputs the library once mishandled (deep nesting, tzdata folder names, NaN or
wrong-typed waits, unhashable models, lone surrogates) have tests of their own.
(The limiter against a model of sliding windows: tests/unit_tests/test_limiter_model.py.)
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rotating_llm import (
    APIKey,
    ConfigError,
    KeyFileError,
    KeyManager,
    RotatingLLMError,
    Settings,
    load_keys_file,
)
from rotating_llm.config import ENV_VARS
from rotating_llm.conversation import ConversationError, ConversationStore
from rotating_llm.keys.loader import parse_keys
from rotating_llm.secrets import EnvSecretStore

#: reproducible, and no example database written into the working tree
FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

VALID_DOC = {
    "keys": [
        {"key_id": "gemini-1", "model_name": "gemini-2.5-flash", "provider": "gemini",
         "rpm": 10, "tpm": 250000, "rpd": 250, "tags": {"team": "a"}, "weight": 2.0},
        {"key_id": "gemini-2", "model_name": "gemini-2.5-flash", "provider": "gemini",
         "rpm": 5, "tpm": 100000, "active": False, "base_url": "http://127.0.0.1:1"},
    ]
}  # fmt: skip
VALID_TEXT = json.dumps(VALID_DOC, indent=2).encode()
KEY_FIELDS = [
    "key_id", "model_name", "provider", "rpm", "tpm", "rpd", "active", "tags", "weight",
    "base_url",
]  # fmt: skip

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-3, max_value=3)
    | st.floats()
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
entries = st.dictionaries(
    st.sampled_from(KEY_FIELDS) | st.text(max_size=6), json_values, max_size=len(KEY_FIELDS)
)
documents = (
    json_values
    | st.fixed_dictionaries({"keys": st.lists(entries, max_size=4)})
    | st.fixed_dictionaries({"keys": json_values})
    | st.dictionaries(st.sampled_from(["keys", "extra"]), json_values)
)


def _loads_or_key_file_error(path: Path) -> None:
    try:
        keys = load_keys_file(path)
    except KeyFileError as exc:
        assert str(path) in str(exc)
    else:
        assert isinstance(keys, list) and all(isinstance(k, APIKey) for k in keys)


# -- keys files ---------------------------------------------------------------------------


@FUZZ
@given(doc=documents)
@pytest.mark.slow
def test_parse_keys_random_documents(doc: Any) -> None:
    try:
        keys = parse_keys(doc, "fuzz.json")
    except KeyFileError as exc:
        assert "fuzz.json" in str(exc)
    else:
        assert all(isinstance(k, APIKey) for k in keys)
        assert len({k.key_id for k in keys}) == len(keys)


@FUZZ
@given(doc=documents)
@pytest.mark.slow
def test_load_keys_file_random_json(tmp_path: Path, doc: Any) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    _loads_or_key_file_error(path)


@FUZZ
@given(data=st.binary(max_size=300))
def test_load_keys_file_random_bytes(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "keys.json"
    path.write_bytes(data)
    _loads_or_key_file_error(path)


@FUZZ
@given(
    edits=st.lists(
        st.tuples(
            st.sampled_from(["flip", "delete", "insert", "duplicate"]),
            st.integers(min_value=0, max_value=len(VALID_TEXT) - 1),
            st.integers(min_value=0, max_value=255),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_load_keys_file_mutated_valid_file(
    tmp_path: Path, edits: list[tuple[str, int, int]]
) -> None:
    data = bytearray(VALID_TEXT)
    for op, pos, byte in edits:
        pos = min(pos, len(data) - 1)
        if op == "flip":
            data[pos] ^= byte or 1
        elif op == "delete":
            del data[pos]
        elif op == "insert":
            data.insert(pos, byte)
        else:
            data[pos:pos] = data[pos : pos + 8]
    path = tmp_path / "keys.json"
    path.write_bytes(bytes(data))
    _loads_or_key_file_error(path)


def test_valid_file_still_loads(tmp_path: Path) -> None:
    """The mutations above start from a file that loads."""
    path = tmp_path / "keys.json"
    path.write_bytes(VALID_TEXT)
    assert [k.key_id for k in load_keys_file(path)] == ["gemini-1", "gemini-2"]


def test_deeply_nested_keys_file_is_a_key_file_error(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    with pytest.raises(KeyFileError):
        load_keys_file(path)


# -- Settings.from_env ----------------------------------------------------------------------


env_values = (
    st.text(max_size=20)
    | st.sampled_from(
        ["0", "-1", "1e309", "nan", "inf", "-inf", "true", "yes", "2", "1_000", " 5 ", "0x10",
         "redis://", "local", "deny", "maybe", "UTC", "America/Los_Angeles", "Mars/Base"]
    )
)  # fmt: skip


@FUZZ
@given(env=st.dictionaries(st.sampled_from(sorted(ENV_VARS.values())), env_values, max_size=6))
def test_settings_from_env_random_values(env: dict[str, str]) -> None:
    try:
        found = Settings.from_env(env)
    except ConfigError as exc:
        assert "invalid settings" in str(exc)
    else:
        assert found.window_seconds > 0 and found.max_wait >= 0


@pytest.mark.parametrize("zone", ["America", "Etc"])
def test_time_zone_that_names_a_tzdata_directory_is_a_config_error(zone: str) -> None:
    with pytest.raises(ConfigError):
        Settings.from_env({"ROTATING_LLM_RPD_TIMEZONE": zone})


# -- KeyManager.acquire on the embedded store ------------------------------------------------


@pytest.fixture
def embedded_manager() -> Iterator[KeyManager]:
    keys = [
        APIKey(key_id=f"k{i}", model_name="m", provider="gemini", rpm=1_000_000, tpm=1_000)
        for i in range(2)
    ] + [APIKey(key_id="off", model_name="off-model", provider="gemini", rpm=1, tpm=1,
                active=False)]  # fmt: skip
    secrets = {f"API_KEY_{k.key_id.upper()}": f"sk-fuzz-{k.key_id}" for k in keys}
    km = KeyManager(keys, settings=Settings(max_wait=0), secret_store=EnvSecretStore(secrets))
    yield km
    km.close()


odd_tokens = (
    st.integers()
    | st.integers(min_value=-2, max_value=1_002)
    | st.floats()
    | st.booleans()
    | st.none()
    | st.text(max_size=4)
    | st.just(10**30)
)
#: bounded waits only (a wait is real time); NaN and wrong types are refused at once
odd_waits = st.none() | st.floats(max_value=0.02) | st.integers(-5, 0) | st.text(max_size=2)
odd_models = st.sampled_from(["m", "off-model", "", " m", "M", "m\x00"]) | st.text(max_size=6)
odd_models = odd_models | st.none() | st.integers() | st.binary(max_size=3)


@FUZZ
@given(tokens=odd_tokens, wait=odd_waits, model=odd_models)
def test_acquire_odd_inputs(
    embedded_manager: KeyManager, tokens: Any, wait: Any, model: Any
) -> None:
    assert embedded_manager.store.primary.is_embedded
    try:
        lease = embedded_manager.acquire(model, tokens, max_wait=wait)
    except RotatingLLMError:
        return
    assert model == "m" and isinstance(tokens, int) and 0 <= tokens <= 1_000
    assert lease.key_id in {"k0", "k1"}
    lease.release()


def test_acquire_with_a_wait_after_exhaustion_is_bounded(embedded_manager: KeyManager) -> None:
    """An exhausted pool with a finite max_wait refuses with the library's error."""
    leases = [embedded_manager.acquire("m", 500, max_wait=0) for _ in range(4)]
    with pytest.raises(RotatingLLMError) as info:
        embedded_manager.acquire("m", 500, max_wait=0.01)
    assert type(info.value).__name__ == "AllKeysExhaustedError"
    for lease in leases:
        lease.release()


def test_acquire_nan_max_wait_is_refused_not_unbounded() -> None:
    keys = [APIKey(key_id="k0", model_name="m", provider="gemini", rpm=1, tpm=100)]
    km = KeyManager(
        keys,
        settings=Settings(window_seconds=0.5, max_wait=0),
        secret_store=EnvSecretStore({"API_KEY_K0": "sk-fuzz"}),
    )
    try:
        km.acquire("m").complete()  # the pool is exhausted for 0.5 s
        start = time.monotonic()
        try:
            lease = km.acquire("m", 1, max_wait=math.nan)
        except RotatingLLMError:
            return
        waited = time.monotonic() - start
        lease.release()
        pytest.fail(f"max_wait=nan waited {waited:.2f}s for capacity and returned a lease")
    finally:
        km.close()


@pytest.mark.parametrize(
    ("model", "wait"), [("m", "1"), ("m", [1]), (["m"], None), ({"m": 1}, None)]
)
def test_acquire_wrong_types_are_config_errors(
    embedded_manager: KeyManager, model: Any, wait: Any
) -> None:
    with pytest.raises(ConfigError):
        embedded_manager.acquire(model, 1, max_wait=wait)


@pytest.mark.parametrize(
    ("priority", "tenant", "names"),
    [
        (True, None, "priority must be an integer"),
        (1.5, None, "priority must be an integer"),
        ("9", None, "priority must be an integer"),
        (1001, None, "priority must be from -1000 to 1000"),
        (-(10**30), None, "priority must be from -1000 to 1000"),
        (0, "", "tenant must be 1 to 256 characters"),
        (0, "t" * 257, "tenant must be 1 to 256 characters"),
        (0, 7, "tenant must be a string"),
    ],
)
def test_acquire_bad_priority_or_tenant_is_a_config_error(
    embedded_manager: KeyManager, priority: Any, tenant: Any, names: str
) -> None:
    with pytest.raises(ConfigError, match=names):
        embedded_manager.acquire("m", 1, priority=priority, tenant=tenant)
    lease = embedded_manager.acquire("m", 1, priority=-1000, tenant="t" * 256)
    lease.release()


# -- ConversationStore.append_turn -----------------------------------------------------------


@pytest.fixture
def conversations() -> Iterator[ConversationStore]:
    store = ConversationStore(Settings())
    assert store.store.is_embedded
    yield store
    store.close()


message_like = (
    json_values
    | st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant", "system", "tool", "human", "x"]) | scalars,
         "content": json_values}
    )
    | st.fixed_dictionaries(
        {"type": st.sampled_from(["human", "ai", "system", "tool", "chat", "nope"]) | scalars,
         "data": json_values}
    )
)  # fmt: skip
conv_ids = st.sampled_from(["c1", "a{b}", "", "x" * 300, "tab\there"]) | st.text(max_size=10)
conv_ids = conv_ids | st.none() | st.integers()


@FUZZ
@given(
    conv=conv_ids,
    messages=st.lists(message_like, max_size=4) | json_values,
    tokens=st.integers() | st.floats() | st.booleans() | st.none(),
)
@pytest.mark.slow
def test_append_turn_odd_messages(
    conversations: ConversationStore, conv: Any, messages: Any, tokens: Any
) -> None:
    try:
        length = conversations.append_turn(conv, messages, tokens=tokens)
    except ConversationError:
        return
    stored = conversations.get_messages(conv)
    assert length == len(stored) >= len(messages)


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("conv", "messages"),
    [
        pytest.param(
            "c", [{"role": "user", "content": "\ud800"}], id="lone-surrogate-content"
        ),
        pytest.param(
            "\ud800", [{"role": "user", "content": "x"}], id="lone-surrogate-conv-id"
        ),
        pytest.param(
            "c", [{"role": "user", "content": _nested(5_000)}], id="deeply-nested-content"
        ),
    ],
)  # fmt: skip
def test_append_turn_unencodable_input_is_a_conversation_error(
    conversations: ConversationStore, conv: str, messages: Any
) -> None:
    with pytest.raises(ConversationError):
        conversations.append_turn(conv, messages)


@pytest.mark.parametrize("messages", [None, 5, 1.5, iter([{"role": "user", "content": "x"}])])
def test_append_turn_needs_a_sequence(conversations: ConversationStore, messages: Any) -> None:
    """Found by the fuzz run above: ``None`` raised a bare TypeError from deep inside."""
    with pytest.raises(ConversationError, match="messages must be a sequence"):
        conversations.append_turn("c1", messages)
    assert conversations.get_messages("c1") == []
