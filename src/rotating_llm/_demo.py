"""``rotating-llm demo``: a real workload through a pool of keys, on the simulator.

Everything runs locally: the embedded store (or ``--redis-url``), the provider
simulator on loopback, and worker threads that lease a key, call the simulator's
Gemini REST API with it, and settle the lease from the answer. One "minute" lasts
``window`` seconds so the demo ends in well under 30 seconds.

With three keys or more, two of them share one provider project (:data:`GROUP`): the
simulator counts them together, as Gemini counts per project, and the pool declares the
same quota group, so the pair never gets more than one key's requests between them.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rotating_llm.config import Settings
from rotating_llm.errors import RotatingLLMError
from rotating_llm.failures import classify_http
from rotating_llm.keys import APIKey, FailureKind, KeyManager, QuotaGroup
from rotating_llm.secrets import EnvSecretStore

__all__ = ["DemoResult", "run_demo"]

MODEL = "gemini-2.5-flash"
#: The provider project that demo-key-2 and demo-key-3 share (with three keys or more).
GROUP = "demo-project"


@dataclass
class DemoResult:
    """What the demo did."""

    requests: int
    served: int = 0
    failed: int = 0
    waits: int = 0
    wait_seconds: float = 0.0
    provider_429s: int = 0
    per_key: Counter[str] = field(default_factory=Counter)
    per_tier: Counter[int] = field(default_factory=Counter)
    per_group: Counter[str] = field(default_factory=Counter)
    #: served requests of the demo's conversations: on their last key ("held") or not
    affinity: Counter[str] = field(default_factory=Counter)
    disabled: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "served": self.served,
            "failed": self.failed,
            "waits": self.waits,
            "wait_seconds": round(self.wait_seconds, 3),
            "provider_429s": self.provider_429s,
            "per_key": dict(sorted(self.per_key.items())),
            "per_tier": {str(t): n for t, n in sorted(self.per_tier.items())},
            "per_group": dict(sorted(self.per_group.items())),
            "affinity": {"held": self.affinity["held"], "moved": self.affinity["moved"]},
            "disabled": self.disabled,
            "seconds": round(self.seconds, 2),
        }


def _call(url: str, api_key: str, prompt: str) -> tuple[int, bytes, dict[str, str]]:
    body = json.dumps({"contents": [{"role": "user", "parts": [{"text": prompt}]}]}).encode()
    req = urllib.request.Request(
        f"{url}/v1beta/models/{MODEL}:generateContent",
        data=body,
        headers={"Content-Type": "application/json", "x-goog-api-key": api_key},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status), resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read(), dict(exc.headers or {})


def _one_request(km: KeyManager, result: DemoResult, lock: threading.Lock, n: int) -> None:
    prompt = f"Request {n}: summarise why key rotation needs one shared clock."
    conv = f"demo-conversation-{n % 4}" if n % 2 else None  # half are turns of 4 chats
    tried: list[str] = []
    for _ in range(4):
        try:
            lease = km.acquire(MODEL, 64, max_wait=30, exclude=tried, affinity=conv)
        except RotatingLLMError:
            break
        if lease.waited > 0.01:
            with lock:
                result.waits += 1
                result.wait_seconds += lease.waited
        try:
            secret = lease.api_key.get_secret_value()
            status, body, headers = _call(lease.base_url or "", secret, prompt)
        except OSError:
            lease.fail(FailureKind.TIMEOUT)
            continue
        if status == 200:
            usage = json.loads(body).get("usageMetadata", {})
            lease.complete(int(usage.get("totalTokenCount", 64)))
            with lock:
                result.served += 1
                result.per_key[lease.key_id] += 1
                result.per_tier[lease.key.tier] += 1
                if lease.key.quota_group:
                    result.per_group[lease.key.quota_group] += 1
                if lease.affinity_held is not None:
                    result.affinity["held" if lease.affinity_held else "moved"] += 1
            return
        verdict = classify_http(status, body, headers)
        if (
            lease.fail(verdict.kind or FailureKind.SERVER, verdict.retry_after, verdict.reason)
            == "disabled"
        ):
            with lock:
                if lease.key_id not in result.disabled:
                    result.disabled.append(lease.key_id)
        if not verdict.retry_elsewhere:
            break
        tried.append(lease.key_id)
    with lock:
        result.failed += 1


def _table(km: KeyManager, result: DemoResult) -> Any:
    from rich.table import Table

    table = Table(title=f"pool {MODEL} - one 'minute' = {km.settings.window_seconds:g}s")
    for col in ("key", "tier", "group", "state", "rpm window", "tokens", "served"):
        table.add_column(col)
    for st in km.get_all_key_statuses(MODEL):
        used, limit = st["rpm_usage"], st["rpm_limit"]
        bar = "#" * used + "." * max(0, limit - used)
        if st["disabled"]:
            state = f"[red]disabled: {st['disabled_reason']}[/red]"
        elif st["in_cooldown"]:
            state = f"[yellow]cooldown {st['cooldown_remaining']:.1f}s[/yellow]"
        elif used >= limit:
            state = "[yellow]full[/yellow]"
        else:
            state = "[green]ready[/green]"
        table.add_row(
            st["key_id"],
            "paid (1)" if st["tier"] else "free (0)",
            st["quota_group"] or "-",
            state,
            f"{bar} {used}/{limit}",
            str(st["tpm_usage"]),
            str(result.per_key[st["key_id"]]),
        )
    captions = [f"waits {result.waits} ({result.wait_seconds:.1f}s in all)"]
    for g in km.get_all_group_statuses():
        captions.append(
            f"group {g['group_id']} ({', '.join(g['key_ids'])}): "
            f"{g['rpm_usage']}/{g['rpm_limit']} in the window, one project's quota"
        )
    held, moved = result.affinity["held"], result.affinity["moved"]
    captions.append(f"conversation turns on their last key: {held} (moved: {moved})")
    table.caption = "\n".join(captions)
    return table


def run_demo(
    *,
    requests: int = 100,
    keys: int = 4,
    rpm: int = 10,
    window: float = 5.0,
    workers: int = 8,
    redis_url: str | None = None,
    live: bool = True,
    to_stderr: bool = False,
) -> DemoResult:
    """Run the demo workload and return its result (the CLI prints it)."""
    from rich.console import Console, Group
    from rich.live import Live
    from rich.progress import Progress

    from rotating_llm.testing import FakeProvider

    console = Console(stderr=to_stderr)
    result = DemoResult(requests=requests)
    lock = threading.Lock()
    env = {f"API_KEY_DEMO_KEY_{i + 1}": "demo-" + secrets.token_urlsafe(24) for i in range(keys)}
    grouped = [f"demo-key-{i}" for i in (2, 3)] if keys >= 3 else []
    projects = {GROUP: [env[f"API_KEY_{k.upper().replace('-', '_')}"] for k in grouped]}
    with FakeProvider(
        rpm=rpm,
        tpm=1_000_000,
        window=window,
        projects=projects if grouped else None,
        project_rpm=rpm if grouped else None,
    ) as fp:
        pool = [
            APIKey(
                key_id=f"demo-key-{i + 1}",
                model_name=MODEL,
                provider="gemini",
                rpm=rpm,
                tpm=1_000_000,
                base_url=fp.url,
                tier=1 if i == 0 and keys >= 3 else 0,  # a paid key: overflow of the free
                quota_group=GROUP if f"demo-key-{i + 1}" in grouped else None,
            )
            for i in range(keys)
        ]
        groups = [QuotaGroup(group_id=GROUP, rpm=rpm)] if grouped else []
        settings = Settings(redis_url=redis_url, window_seconds=window, key_prefix="demo:")
        km = KeyManager(
            pool, settings=settings, secret_store=EnvSecretStore(env), quota_groups=groups
        )
        revoke_at = requests // 3 if keys > 1 else -1
        progress = Progress()
        task = progress.add_task("requests", total=requests)
        counter = iter(range(requests))
        start = time.monotonic()

        def worker() -> None:
            for n in counter:
                if n == revoke_at:  # the provider revokes one key mid-run
                    fp.revoke(env[f"API_KEY_DEMO_KEY_{keys}"])
                _one_request(km, result, lock, n)
                progress.advance(task)

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
        with Live(
            Group(_table(km, result), progress),
            console=console,
            refresh_per_second=4,
            transient=False,
            auto_refresh=live,
        ) as view:
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads):
                time.sleep(0.25)
                view.update(Group(_table(km, result), progress))
            view.update(Group(_table(km, result), progress))
        result.seconds = time.monotonic() - start
        result.provider_429s = sum(s.rate_limited for s in fp.stats().values())
        km.close()
    return result
