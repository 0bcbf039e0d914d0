"""``FakeProvider``: the public face of the simulator."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

from rotating_llm.testing._config import (
    Limits,
    TpmCounts,
    fingerprint,
    validate_limit,
    validate_positive,
)
from rotating_llm.testing._controls import QuotaControls
from rotating_llm.testing._faults import Fault, parse_fault
from rotating_llm.testing._quota import check_projects, check_true_limits
from rotating_llm.testing._stats import KeyStats

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess
    from types import TracebackType

    from rotating_llm.testing._runner import ServerThread
    from rotating_llm.testing._state import State

__all__ = ["FakeProvider", "simulator_window"]

#: Base URL -> window (seconds) of every simulator running in this process.
_LIVE: dict[str, float] = {}


def simulator_window(base_url: str) -> float | None:
    """The RPM/TPM window of the simulator in this process that ``base_url`` points at."""
    for url, window in list(_LIVE.items()):
        if base_url.startswith(url):
            return window
    return None


class FakeProvider(QuotaControls):
    """A local HTTP server speaking Gemini's REST API and OpenAI's chat completions.

    Limits are exact: sliding windows of ``window`` seconds for RPM and TPM, of
    ``day_window`` seconds (or calendar days, ``day_reset``) for RPD and TPD. TPM and
    TPD charge the prompt's tokens (``tpm_counts="input"``, like Gemini) or prompt plus
    reply (``"total"``); tokens are ``ceil(characters / 4)``. Refused or faulted
    requests consume no quota. Any non-empty key is valid unless ``keys`` lists the
    valid ones, or it is revoked.

    Who counts against whom, like Gemini (quotas per Google Cloud project): a key
    outside ``projects`` is its own project, limited by ``rpm``/``tpm``/``rpd``/``tpd``;
    the keys of one project share the ``project_*`` limits (each project has its own
    windows). Both answer with Gemini's real quota ids (:data:`QUOTA_IDS`).
    ``true_limits`` adds limits of one key alone, enforced on top (what a provider
    really allows when it differs from what the client was told), answered with the
    per-key ids (:data:`KEY_QUOTA_IDS`). OpenAI answers (success and 429) carry
    ``x-ratelimit-*`` headers from the tightest per-minute limit of the key.

    Args:
        rpm: Requests per window of each key outside a project (``None``: unlimited).
        tpm: Tokens per window of each such key.
        rpd: Requests per day of each such key.
        tpd: Tokens per day of each such key.
        window: RPM/TPM window in seconds (60 by default; shorter in tests).
        day_window: RPD window in seconds.
        keys: Allow-list of valid keys (``None``: any non-empty key).
        tpm_counts: ``"input"`` or ``"total"``.
        day_reset: IANA time zone whose midnight resets RPD and TPD, e.g.
            ``"America/Los_Angeles"`` like Gemini (``None``: a sliding ``day_window``).
        projects: Project name -> its keys, e.g. ``{"proj-a": ["k1", "k2"]}``; a key
            may be in one project only.
        project_rpm: Requests per window of each project, shared by its keys.
        project_tpm: Tokens per window of each project.
        project_rpd: Requests per day of each project.
        project_tpd: Tokens per day of each project.
        true_limits: Key -> its own limits, e.g. ``{"k1": {"rpm": 2}}`` (names
            ``rpm``, ``tpm``, ``rpd``, ``tpd``).
        host: Interface to listen on.
        port: Port (0: a free one).
        process: Serve from a child process (own GIL) instead of a thread.
        startup_timeout: Seconds to wait for the server to listen.

    Raises:
        ValueError: An argument is invalid (the message names it).

    Quota controls (:class:`QuotaControls`): ``set_limits``, ``set_true_limits``,
    ``spend``, ``usage``, ``project_usage``.
    """

    def __init__(
        self,
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        rpd: int | None = None,
        tpd: int | None = None,
        window: float = 60.0,
        day_window: float = 86_400.0,
        keys: Iterable[str] | None = None,
        tpm_counts: TpmCounts = "input",
        day_reset: str | None = None,
        projects: Mapping[str, Iterable[str]] | None = None,
        project_rpm: int | None = None,
        project_tpm: int | None = None,
        project_rpd: int | None = None,
        project_tpd: int | None = None,
        true_limits: Mapping[str, Mapping[str, int]] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        process: bool = False,
        startup_timeout: float = 30.0,
    ) -> None:
        limits = Limits(rpm=rpm, tpm=tpm, rpd=rpd, tpd=tpd)
        project_limits = Limits(
            rpm=validate_limit("project_rpm", project_rpm),
            tpm=validate_limit("project_tpm", project_tpm),
            rpd=validate_limit("project_rpd", project_rpd),
            tpd=validate_limit("project_tpd", project_tpd),
        )
        project_map = check_projects(projects, project_limits)
        true_map = check_true_limits(true_limits)
        key_list: list[str] | None = None
        if keys is not None:
            if isinstance(keys, str):
                raise ValueError("keys must be an iterable of key strings, not one string")
            key_list = list(keys)
            if not all(isinstance(k, str) and k for k in key_list):
                raise ValueError("keys must contain only non-empty strings")
        if tpm_counts not in ("input", "total"):
            raise ValueError(f"tpm_counts must be 'input' or 'total', got {tpm_counts!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an integer from 0 to 65535, got {port!r}")
        if not isinstance(host, str) or not host:
            raise ValueError("host must be a non-empty string")
        self._config: dict[str, Any] = {
            **limits.to_dict(),
            "window": validate_positive("window", window),
            "day_window": validate_positive("day_window", day_window),
            "keys": key_list,
            "tpm_counts": tpm_counts,
            "day_reset": day_reset,
            "projects": project_map,
            "project_limits": project_limits.to_dict(),
            "true_limits": true_map,
            "host": host,
            "port": port,
        }
        if day_reset is not None:
            from rotating_llm.testing._state import _zone

            _zone(day_reset)  # raises ValueError naming day_reset
        self._startup_timeout = validate_positive("startup_timeout", startup_timeout)
        self.process = bool(process)
        self.host = host
        self._port: int | None = None
        self._state: State | None = None
        self._thread: ServerThread | None = None
        self._proc: BaseProcess | None = None
        self._conn: Connection | None = None

    # -- lifecycle ----------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the server is listening."""
        return self._port is not None

    @property
    def port(self) -> int:
        """The bound port (only while running)."""
        if self._port is None:
            raise RuntimeError("the fake provider is not running; call start() first")
        return self._port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8123`` (Gemini clients' ``base_url``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def gemini_api_base(self) -> str:
        """LiteLLM ``gemini/...`` models' ``api_base``: :attr:`url` + ``/v1beta``."""
        return f"{self.url}/v1beta"

    @property
    def openai_url(self) -> str:
        """OpenAI clients' ``base_url``/``api_base``: :attr:`url` + ``/v1``."""
        return f"{self.url}/v1"

    def start(self) -> FakeProvider:
        """Start serving (idempotent); return ``self``."""
        if self._port is not None:
            return self
        if self.process:
            self._start_process()
        else:
            from rotating_llm.testing._runner import ServerThread, build_state

            self._state = build_state(self._config)
            self._thread = ServerThread(self._state, self.host, int(self._config["port"]))
            self._port = self._thread.start(self._startup_timeout)
        _LIVE[self.url] = float(self._config["window"])
        return self

    def _start_process(self) -> None:
        from rotating_llm.testing._runner import child_main

        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=child_main, args=(self._config, child), name="fake-provider", daemon=True
        )
        proc.start()
        child.close()
        if not parent.poll(self._startup_timeout):
            proc.terminate()
            raise RuntimeError("the fake provider process did not start in time")
        try:
            self._port = int(parent.recv())
        except EOFError:
            proc.join(1)
            raise RuntimeError("the fake provider process failed to start") from None
        self._proc, self._conn = proc, parent

    def stop(self) -> None:
        """Stop serving (idempotent). Hanging requests are released first."""
        if self._port is not None:
            _LIVE.pop(self.url, None)
        if self._thread is not None:
            self._thread.stop()
            self._thread = None
        if self._proc is not None and self._conn is not None:
            with contextlib.suppress(OSError):  # the child may have exited already
                self._conn.send("stop")
            self._proc.join(10)
            if self._proc.is_alive():  # pragma: no cover - defensive
                self._proc.terminate()
                self._proc.join(5)
            self._conn.close()
            self._proc = self._conn = None
        self._port = None

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._port is not None else "stopped"
        mode = "process" if self.process else "thread"
        return f"FakeProvider({where}, {mode})"

    # -- control ------------------------------------------------------------

    def _call(self, op: str, **args: Any) -> Any:
        if self._state is not None and self._thread is not None:
            return self._state.control(op, args)
        if self._port is None:
            raise RuntimeError("the fake provider is not running; call start() first")
        data = json.dumps({"op": op, "args": args}).encode()
        req = urllib.request.Request(
            f"{self.url}/_fake/control", data=data, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read())["result"]
        except urllib.error.HTTPError as exc:
            message = json.loads(exc.read()).get("error", str(exc))
            raise ValueError(message) from None

    def revoke(self, key: str) -> None:
        """Revoke a key now: Gemini ``400 API_KEY_INVALID``, OpenAI ``401``."""
        self._call("revoke", key=key)

    def suspend(self, key: str) -> None:
        """Suspend a key now: ``403 PERMISSION_DENIED``."""
        self._call("suspend", key=key)

    def restore(self, key: str) -> None:
        """Undo :meth:`revoke`/:meth:`suspend` (and allow the key if ``keys`` was given)."""
        self._call("restore", key=key)

    def inject(
        self,
        fault: Fault | str,
        *,
        key: str | None = None,
        times: int | None = None,
        probability: float | None = None,
        seed: int | None = None,
        delay: float | None = None,
        after_chunks: int | None = None,
    ) -> int:
        """Inject a fault; return the rule id (for :meth:`remove_fault`).

        Args:
            fault: A :class:`Fault` or its value, e.g. ``"overloaded"``.
            key: Only this key (``None``: every key).
            times: Only the next ``times`` matching requests (``None``: until removed).
            probability: Chance per matching request (default 1).
            seed: Seed of the rule's own random generator (reproducible runs).
            delay: Seconds for ``latency`` (required) and ``hang`` (default 300).
            after_chunks: Stream events sent before ``stream_cut`` resets (default 1).
        """
        return int(
            self._call(
                "inject",
                fault=parse_fault(fault).value,
                key=key,
                times=times,
                probability=probability,
                seed=seed,
                delay=delay,
                after_chunks=after_chunks,
            )
        )

    def remove_fault(self, rule_id: int) -> bool:
        """Remove one fault rule; return whether it existed."""
        return bool(self._call("remove_fault", rule_id=rule_id))

    def clear_faults(self, key: str | None = None) -> None:
        """Remove every fault rule, or only those bound to ``key``."""
        self._call("clear_faults", key=key)

    def faults(self) -> list[dict[str, Any]]:
        """Describe the active fault rules (keys by fingerprint)."""
        result: list[dict[str, Any]] = self._call("faults")
        return result

    def stats(self) -> dict[str, KeyStats]:
        """Counters of every key seen, keyed by :func:`fingerprint` (never the key)."""
        raw: dict[str, dict[str, Any]] = self._call("stats")
        return {fp: KeyStats.from_dict(_strip(data)) for fp, data in raw.items()}

    def server_stats(self) -> dict[str, int]:
        """Model requests ``handled``, ``in_flight`` now, and ``peak_in_flight``."""
        result: dict[str, int] = self._call("server_stats")
        return result

    def key_stats(self, key: str) -> KeyStats:
        """Counters of one key, looked up by the full key."""
        return KeyStats.from_dict(_strip(self._call("key_stats", key=key)))

    @staticmethod
    def fingerprint(key: str) -> str:
        """The safe name :meth:`stats` uses for ``key``."""
        return fingerprint(key)

    def reset_stats(self) -> None:
        """Zero every counter and the concurrency peak (quota windows are kept)."""
        self._call("reset_stats")

    def reset(self) -> None:
        """Forget counters, quota windows, faults, overrides and revocations."""
        self._call("reset")


def _strip(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != "window"}
