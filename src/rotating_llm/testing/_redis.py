"""Throwaway Redis servers on loopback for tests: one server, or a local 3-master cluster.

Need the ``redis-server`` (and, for a cluster, ``redis-cli``) binaries: Debian's
``redis-server`` package has both. Nothing is persisted.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import redis
from redis.cluster import RedisCluster as _ClusterClient

__all__ = ["RedisCluster", "RedisServer", "free_port"]


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    for _ in range(200):
        port = random.randint(20000, 45000)
        try:
            for p in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed (apt-get install redis-server)")
    return found


def _wait(probe: Callable[[], object], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            probe()
            return
        except (redis.RedisError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _pinger(port: int) -> Callable[[], object]:
    def ping() -> object:
        return redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.2).ping()

    return ping


class RedisServer:
    """``redis-server`` on ``port`` (default: a free one), without persistence; ``args``
    are more of its options (``["--enable-debug-command", "yes"]``)."""

    def __init__(self, port: int | None = None, args: Sequence[str] = ()) -> None:
        self.binary = _binary("redis-server")
        self.port = port or free_port()
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait until it answers (on failure nothing is left running)."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait(_pinger(self.port))

    def stop(self) -> None:
        """Kill the server (SIGKILL: as abrupt as a crash)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


class RedisCluster:
    """``masters`` nodes with ``--cluster-enabled yes`` joined by ``redis-cli --cluster
    create``; ``args`` are more options of every node (``["--enable-debug-command",
    "yes"]``)."""

    def __init__(self, masters: int = 3, args: Sequence[str] = ()) -> None:
        self.server = _binary("redis-server")
        self.args = list(args)
        self.cli = _binary("redis-cli")
        self.ports = [_cluster_port() for _ in range(masters)]
        self.dir = Path(tempfile.mkdtemp(prefix="rllm-cluster-"))
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """URL of the first node (a cluster client discovers the others)."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> None:
        """Start the nodes, create the cluster and wait until it is ``ok``.

        On failure every node already started is stopped again.
        """
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        for port in self.ports:
            node_dir = self.dir / str(port)
            node_dir.mkdir()
            self.procs.append(subprocess.Popen(
                [self.server, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled",
                 "yes", "--cluster-config-file", "nodes.conf", "--save", "", "--appendonly",
                 "no", "--dir", str(node_dir), *self.args],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))  # fmt: skip
        for port in self.ports:
            _wait(_pinger(port))
        subprocess.run(
            [self.cli, "--cluster", "create", *[f"127.0.0.1:{p}" for p in self.ports],
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60,
        )  # fmt: skip

        def ready() -> None:
            info = redis.Redis(host="127.0.0.1", port=self.ports[0]).cluster("info")
            if info.get("cluster_state") != "ok":
                raise redis.RedisError("cluster not ready")
            _ClusterClient.from_url(self.url).ping()

        _wait(ready, timeout=30)

    def stop(self) -> None:
        """Kill every node and remove their files."""
        for proc in self.procs:
            proc.kill()
            proc.wait(timeout=10)
        self.procs.clear()
        shutil.rmtree(self.dir, ignore_errors=True)
