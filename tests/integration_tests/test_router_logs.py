"""No secret reaches any log: every logger at DEBUG (root, rotating_llm.*, httpx,
google_genai, openai, ...) during a router workload with failures, and the log file."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _lc_fixtures import GPT, pool

from rotating_llm import Settings
from rotating_llm.logs import close_log_file, configure_logging
from rotating_llm.router import RequestRouter

AIOHTTP = "ignore:Inheritance class AiohttpClientSession from ClientSession:DeprecationWarning"
pytestmark = [pytest.mark.redis, pytest.mark.filterwarnings(AIOHTTP)]


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.names: set[str] = set()
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        self.names.add(record.name)


@pytest.fixture
def everything_at_debug() -> Iterator[ListHandler]:
    import google.genai  # noqa: F401  (their loggers exist before levels are set)
    import httpx  # noqa: F401
    import openai  # noqa: F401

    manager = logging.root.manager
    saved = {n: lg.level for n, lg in manager.loggerDict.items() if isinstance(lg, logging.Logger)}
    root_level = logging.root.level
    handler = ListHandler()
    logging.root.addHandler(handler)
    logging.root.setLevel(logging.DEBUG)
    for logger in list(manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            logger.setLevel(logging.DEBUG)
            logger.disabled = False
    try:
        yield handler
    finally:
        logging.root.removeHandler(handler)
        logging.root.setLevel(root_level)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
        for name in set(manager.loggerDict) - set(saved):
            found = manager.loggerDict[name]
            if isinstance(found, logging.Logger):
                found.setLevel(logging.NOTSET)


def _workload(router: RequestRouter, model: str, revoke: Any) -> list[dict[str, object]]:
    out = [router.send_chat("log-conv", f"turn {i}", model) for i in range(2)]
    assert out[-1]["key_id"] == "k0"  # the conversation's key (sticky): revoked under it
    revoke()
    out.append(router.send_chat("log-conv", "turn 2", model))  # fails on k0, moves
    out += [router.send_one_shot(f"after revoke {i}", model) for i in range(3)]
    return out


@pytest.mark.parametrize("kind", ["gemini", "openai"])
def test_no_secret_in_any_log_at_debug(
    everything_at_debug: ListHandler, redis_url: str, prefix: str, tmp_path: Path, kind: str
) -> None:
    log_file = tmp_path / "logs" / "llm_router.log"
    model = GPT if kind == "openai" else "gemini-2.5-flash"
    configure_logging(Settings(log_file=log_file, log_level="DEBUG"))
    try:
        with pool(
            3, kind=kind, model=model, redis_url=redis_url, key_prefix=prefix, router_enabled=True
        ) as p:
            router = RequestRouter(
                p.manager, chat_model_options={"backoff_base": 0.01, "backoff_max": 0.05}
            )
            p.provider.inject("overloaded", times=1)
            results = _workload(router, model, lambda: p.provider.revoke(p.secret("k0")))
            secrets = list(p.secrets.values())
    finally:
        close_log_file()
    assert sum(bool(r["success"]) for r in results) >= 5
    captured = "\n".join(everything_at_debug.lines)
    on_disk = log_file.read_text()
    # the capture is real: the HTTP stack and the library logged at DEBUG
    assert any(n.startswith(("httpx", "httpcore")) for n in everything_at_debug.names)
    assert any(n.startswith("rotating_llm.") for n in everything_at_debug.names)
    assert "k0 failed (auth" in captured and "k0 failed (auth" in on_disk
    for secret in secrets:
        assert secret not in captured
        assert secret not in on_disk
        assert secret not in repr(results)
