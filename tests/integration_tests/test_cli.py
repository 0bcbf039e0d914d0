"""The ``rotating-llm`` command: demo end to end, health, key status and control."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.redis, pytest.mark.multiprocess]


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("API_KEY_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "rotating_llm", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )


@pytest.mark.slow
def test_demo_runs_on_a_fresh_machine_setup(tmp_path: Path) -> None:
    env = {"REDIS_URL": ""}  # the embedded store, as on a machine without Redis
    out = run_cli("demo", "--no-live", "--json", "--requests", "40", "--window", "2", env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert result["served"] == 40 and result["failed"] == 0
    assert result["provider_429s"] == 0  # the pool never sent what the provider would refuse
    assert result["disabled"] == ["demo-key-4"]  # revoked mid-run, told apart by the answer
    assert sum(result["per_key"].values()) == 40
    assert sum(result["per_tier"].values()) == 40  # demo-key-1 is the paid overflow (tier 1)
    assert set(result["per_tier"]) <= {"0", "1"} and result["per_tier"]["0"] > 0
    # the odd requests are turns of 4 conversations: each says whether its key held
    assert result["affinity"]["held"] + result["affinity"]["moved"] == 20
    # demo-key-2 and -3 share one provider project: the pool's quota group kept the pair
    # within the project's quota (no 429 above), and they were used
    assert set(result["per_group"]) == {"demo-project"} and result["per_group"]["demo-project"] > 0
    assert result["per_group"]["demo-project"] == (
        result["per_key"]["demo-key-2"] + result["per_key"]["demo-key-3"]
    )
    assert "per process" in out.stderr or "within this process" in out.stderr


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.json"
    path.write_text(
        json.dumps(
            {
                "keys": [
                    {
                        "key_id": "cli-a",
                        "model_name": "m",
                        "provider": "gemini",
                        "rpm": 5,
                        "tpm": 100,
                    },
                    {
                        "key_id": "cli-b",
                        "model_name": "m",
                        "provider": "gemini",
                        "rpm": 5,
                        "tpm": 100,
                        "active": False,
                        "tier": 2,
                    },
                ]
            }
        )
    )
    return path


def cli_env(redis_url: str, prefix: str, **extra: str) -> dict[str, str]:
    return {"REDIS_URL": redis_url, "ROTATING_LLM_KEY_PREFIX": prefix, **extra}


def test_health_check_exit_codes(keys_file: Path, redis_url: str, prefix: str) -> None:
    ok = run_cli(
        "--keys",
        str(keys_file),
        "--health-check",
        env=cli_env(redis_url, prefix, API_KEY_CLI_A="sk-cli-secret-aaaaaaaaaaaa"),
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "sk-cli-secret" not in ok.stdout + ok.stderr
    no_secret = run_cli(
        "--keys", str(keys_file), "health", "--json", env=cli_env(redis_url, prefix)
    )
    assert no_secret.returncode == 1
    assert json.loads(no_secret.stdout)["secrets_resolved"] == []
    dead = run_cli(
        "--keys",
        str(keys_file),
        "health",
        "--json",
        env=cli_env("redis://127.0.0.1:1/0", prefix, API_KEY_CLI_A="sk-x-123456789"),
    )
    assert dead.returncode == 1
    assert json.loads(dead.stdout)["store_ok"] is False
    missing = run_cli("--keys", str(keys_file.parent / "nope.json"), "health", "--json")
    assert missing.returncode == 1 and "file not found" in json.loads(missing.stdout)["error"]


def test_keys_status_and_control(keys_file: Path, redis_url: str, prefix: str) -> None:
    env = cli_env(redis_url, prefix)
    assert (
        run_cli(
            "--keys",
            str(keys_file),
            "keys",
            "cooldown",
            "cli-a",
            "--seconds",
            "60",
            "--reason",
            "maintenance",
            env=env,
        ).returncode
        == 0
    )
    status = json.loads(
        run_cli("--keys", str(keys_file), "keys", "status", "--json", env=env).stdout
    )
    by_id = {s["key_id"]: s for s in status}
    assert by_id["cli-a"]["in_cooldown"] and by_id["cli-a"]["cooldown_reason"] == "maintenance"
    assert by_id["cli-b"]["active"] is False
    assert (by_id["cli-a"]["tier"], by_id["cli-b"]["tier"]) == (0, 2)
    assert run_cli("--keys", str(keys_file), "keys", "clear", "cli-a", env=env).returncode == 0
    assert run_cli("--keys", str(keys_file), "keys", "disable", "cli-a", env=env).returncode == 0
    status = json.loads(
        run_cli("--keys", str(keys_file), "keys", "status", "--json", env=env).stdout
    )
    assert status[0]["disabled"] is True and status[0]["in_cooldown"] is False
    assert run_cli("--keys", str(keys_file), "keys", "enable", "cli-a", env=env).returncode == 0
    table = run_cli("--keys", str(keys_file), "keys", "status", env=env)
    assert "cli-a" in table.stdout and "ready" in table.stdout
    assert "tier" in table.stdout
    unknown = run_cli("--keys", str(keys_file), "keys", "clear", "nope", env=env)
    assert unknown.returncode == 2 and "unknown key_id 'nope'" in unknown.stderr


def test_subcommands_are_wired() -> None:
    for sub in ("fake-provider", "scan", "demo", "keys"):
        out = run_cli(sub, "--help")
        assert out.returncode == 0 and "usage:" in out.stdout


def test_health_names_missing_secrets_and_unknown_providers(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    entry = {"model_name": "m", "rpm": 5, "tpm": 100}
    keys = [
        {"key_id": "h-1", "provider": "gemini", **entry},
        {"key_id": "h-2", "provider": "openai", **entry},
        {"key_id": "h-3", "provider": "gemnii", **entry},
    ]
    path.write_text(json.dumps({"keys": keys}))
    out = run_cli("health", "--json", "--keys", str(path), env={"REDIS_URL": ""})
    assert out.returncode == 1
    report = json.loads(out.stdout)
    assert report["secrets_missing"] == {
        "h-1": "env: API_KEY_H_1",
        "h-2": "env: API_KEY_H_2",
        "h-3": "env: API_KEY_H_3",
    }
    assert "did you mean 'gemini'?" in report["unknown_providers"]["h-3"]
    assert list(report["unknown_providers"]) == ["h-3"]
    # the secrets present and the custom provider declared: healthy
    secrets = {f"API_KEY_H_{i}": f"sk-h-{i}-0123456789" for i in (1, 2, 3)}
    declared = run_cli(
        "health", "--json", "--provider", "gemnii", "--keys", str(path),
        env={"REDIS_URL": "", **secrets},
    )  # fmt: skip
    assert declared.returncode == 0, declared.stdout
    assert json.loads(declared.stdout)["secrets_missing"] == {}
    assert "sk-h-" not in declared.stdout + declared.stderr


@pytest.mark.parametrize("action", [["cooldown", "cli-a"], ["clear", "cli-a"],
                                    ["disable", "cli-a"], ["enable", "cli-a"]])  # fmt: skip
def test_state_changes_refuse_without_a_shared_redis(keys_file: Path, action: list[str]) -> None:
    embedded = run_cli("keys", *action, "--keys", str(keys_file), env={"REDIS_URL": ""})
    assert embedded.returncode == 2
    lines = embedded.stderr.strip().splitlines()
    assert len(lines) == 1 and "REDIS_URL is not set" in lines[0], embedded.stderr
    assert embedded.stdout == ""  # no "done" claimed
    dead = run_cli(
        "keys", *action, "--keys", str(keys_file),
        env={"REDIS_URL": "redis://user:hunter2@127.0.0.1:1/0"},
    )  # fmt: skip
    assert dead.returncode == 2 and dead.stdout == ""
    lines = dead.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not answer" in lines[0], dead.stderr
    assert "hunter2" not in dead.stderr


def test_keys_option_anywhere_and_changes_persist(
    keys_file: Path, redis_url: str, prefix: str
) -> None:
    env = cli_env(redis_url, prefix)
    k = str(keys_file)
    assert run_cli("keys", "disable", "cli-a", "--keys", k, env=env).returncode == 0
    after = run_cli("keys", "--keys", k, "status", "--json", env=env)
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout)[0]["disabled"] is True  # seen by the next process
    assert run_cli("--keys", k, "keys", "enable", "cli-a", env=env).returncode == 0
    again = run_cli("keys", "status", "--json", "--keys", k, env=env)
    assert json.loads(again.stdout)[0]["disabled"] is False
    health = run_cli("health", "--keys", k, "--json", env=env)
    assert json.loads(health.stdout)["keys_file"] == k
