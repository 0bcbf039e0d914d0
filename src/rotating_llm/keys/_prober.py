"""Self-healing keys: one elected prober per Redis re-checks disabled and cooling keys.

The check is the provider's cheapest real call, which costs no generation quota:
Gemini ``models.get`` (``GET {base}/models/{model}``), OpenAI ``GET {base}/models``.
A key is first checked one interval after it is seen out of rotation, then at most
once per interval across every process (a per-key
``SET NX PX`` slot in Redis), with backoff capped at two intervals, so a key the
provider accepts again is back in rotation within two intervals.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import threading
import time
import uuid
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from rotating_llm.events import emit

if TYPE_CHECKING:
    from rotating_llm.keys.manager import KeyManager
    from rotating_llm.keys.models import APIKey

__all__ = ["Prober", "Verdict", "probe_key", "probe_results"]

logger = logging.getLogger("rotating_llm.keys.prober")

_GEMINI = "https://generativelanguage.googleapis.com/v1beta"
_OPENAI = "https://api.openai.com/v1"
_MAX_BACKOFF = 2  # intervals
_RENEW = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
)
_RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('del', KEYS[1]) else return 0 end"
)


@dataclass(frozen=True)
class Verdict:
    """The provider's answer for one key (never the secret).

    Attributes:
        key_id: The key.
        accepted: True: the provider accepts the key; False: it rejects it (401/403/400
            invalid key); None: no verdict (network error, 5xx, 429).
        status: The HTTP status, or None without an answer.
        detail: One line: why.
    """

    key_id: str
    accepted: bool | None
    status: int | None
    detail: str


def _probe_request(key: APIKey, secret: str) -> tuple[str, dict[str, str]]:
    if key.provider in ("gemini", "google", "google_genai", "vertex"):
        base = key.base_url or _GEMINI
        if not base.rstrip("/").endswith(("/v1beta", "/v1")):
            base = base.rstrip("/") + "/v1beta"
        return f"{base}/models/{key.model_name}", {"x-goog-api-key": secret}
    base = key.base_url or _OPENAI
    return f"{base}/models", {"Authorization": f"Bearer {secret}"}


def probe_key(key: APIKey, secret: str, *, timeout: float = 10.0) -> Verdict:
    """Make the cheapest real call for ``key`` and say what the provider thinks of it."""
    url, headers = _probe_request(key, secret)
    try:
        with httpx.Client(timeout=timeout) as client:
            resp = client.get(url, headers=headers)
    except httpx.HTTPError as exc:
        return Verdict(key.key_id, None, None, f"no answer: {type(exc).__name__}")
    code = resp.status_code
    if code < 300:
        return Verdict(key.key_id, True, code, f"accepted (HTTP {code})")
    if code in (401, 403) or (code == 400 and "key" in resp.text.lower()):
        return Verdict(key.key_id, False, code, f"rejected (HTTP {code})")
    return Verdict(key.key_id, None, code, f"no verdict (HTTP {code})")


def _results_key(manager: KeyManager) -> str:
    return f"{manager.settings.key_prefix}prober:results"


def probe_results(manager: KeyManager) -> dict[str, dict[str, Any]]:
    """The last probe of each key: ``{key_id: {"at", "verdict", "action"}}`` from Redis."""
    raw: dict[Any, Any] = manager.store.primary.sync.hgetall(_results_key(manager))
    out: dict[str, dict[str, Any]] = {}
    for field, value in raw.items():
        name = field.decode() if isinstance(field, bytes) else str(field)
        try:
            out[name] = json.loads(value)
        except (TypeError, ValueError):
            continue
    return out


class Prober:
    """A daemon thread that takes part in the election and, while it holds the lock, probes.

    Args:
        manager: The long-lived manager whose keys are checked.
        interval: Seconds between checks of one key (``ROTATING_LLM_PROBE_SECONDS``).
    """

    def __init__(self, manager: KeyManager, interval: float) -> None:
        self._manager = weakref.ref(manager)
        self.interval = interval
        self._tick = min(max(interval / 4, 0.1), 15.0)
        self._ttl_ms = int(max(self._tick * 4, 3.0) * 1000)  # a dead holder: lock moves
        self._lock_key = f"{manager.settings.key_prefix}prober:lock"
        self._slot = f"{manager.settings.key_prefix}prober:slot:"
        self._token = uuid.uuid4().hex
        self._fails: dict[str, int] = {}
        self._seen: dict[str, float] = {}  # key_id -> when this prober first saw it out
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.holding = False

    def start(self) -> None:
        """Start the thread (once); it is stopped at exit and restarted in a forked child."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="rotating-llm-prober", daemon=True)
        self._thread.start()
        _LIVE.add(self)

    def stop(self) -> None:
        """Stop the thread and give the lock up if this process holds it."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)
        _LIVE.discard(self)
        manager = self._manager()
        if manager is not None and self.holding:
            with contextlib.suppress(Exception):  # store gone: the lock expires by itself
                manager.store.primary.sync.eval(_RELEASE, 1, self._lock_key, self._token)
        self.holding = False

    def _after_fork(self) -> None:
        self._thread = None
        self.holding = False
        self._token = uuid.uuid4().hex
        self._stop = threading.Event()
        self.start()

    def _run(self) -> None:
        while not self._stop.wait(self._tick):  # the first round one tick after start
            try:
                if self._elect():
                    self.run_once()
            except Exception as exc:  # never kill the thread; never log a secret
                logger.warning("key prober: %s", type(exc).__name__)

    def _elect(self) -> bool:
        manager = self._manager()
        if manager is None:
            self._stop.set()
            return False
        r = manager.store.primary.sync
        if self.holding:
            self.holding = bool(r.eval(_RENEW, 1, self._lock_key, self._token, self._ttl_ms))
        if not self.holding:
            self.holding = bool(r.set(self._lock_key, self._token, nx=True, px=self._ttl_ms))
            if self.holding:
                logger.info("key prober: this process now checks the pool's keys")
        return self.holding

    def run_once(self) -> list[Verdict]:
        """Probe every disabled or cooling key whose slot is free; heal what is accepted."""
        manager = self._manager()
        if manager is None:
            return []
        r = manager.store.primary.sync
        out: list[Verdict] = []
        for status in manager.get_all_key_statuses():
            key_id = status["key_id"]
            if not status["active"] or not (status["disabled"] or status["in_cooldown"]):
                self._fails.pop(key_id, None)
                self._seen.pop(key_id, None)
                continue
            if time.monotonic() - self._seen.setdefault(key_id, time.monotonic()) < self.interval:
                continue  # a key just taken out gets one interval before its first probe
            delay = self.interval * min(2 ** self._fails.get(key_id, 0), _MAX_BACKOFF)
            if not r.set(self._slot + key_id, "1", nx=True, px=max(int(delay * 1000), 1)):
                continue
            try:
                secret = manager.secret_store.get_secret(key_id).get_secret_value()
                verdict = probe_key(manager.get_key(key_id), secret)
                self._settle(manager, status, verdict)
            except Exception as exc:  # one key's trouble never stops the others
                logger.warning("key prober: %s not checked: %s", key_id, type(exc).__name__)
                continue
            out.append(verdict)
        return out

    def _settle(self, manager: KeyManager, status: dict[str, Any], verdict: Verdict) -> None:
        key_id = verdict.key_id
        action = "none"
        if verdict.accepted:
            self._fails.pop(key_id, None)
            if status["disabled"]:
                manager.enable_key(key_id)
                action = "re-enabled"
                logger.info("key %s re-enabled: the provider %s", key_id, verdict.detail)
                emit(
                    "key.reenabled",
                    model=status["model_name"],
                    key_id=key_id,
                    reason=f"probe: {verdict.detail}",
                )
        else:
            self._fails[key_id] = self._fails.get(key_id, 0) + 1
            if verdict.accepted is False and not status["disabled"]:
                manager.disable_key(key_id, reason=f"probe: provider {verdict.detail}")
                action = "disabled"
        record = {
            "at": time.time(),
            "verdict": verdict.detail,
            "action": action,
            "was": status["disabled_reason"] or status["cooldown_reason"],
        }
        manager.store.primary.sync.hset(_results_key(manager), key_id, json.dumps(record))


_LIVE: weakref.WeakSet[Prober] = weakref.WeakSet()


def _stop_all() -> None:
    for prober in list(_LIVE):
        prober.stop()


def _restart_all_in_child() -> None:
    for prober in list(_LIVE):
        prober._after_fork()


atexit.register(_stop_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_restart_all_in_child)
