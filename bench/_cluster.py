"""A local 3-master Redis Cluster on loopback ports (redis-server + redis-cli).

The logic of ``tests/integration_tests/_redis_cluster.py``, copied so that ``bench``
does not import from the tests.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis
from redis.cluster import RedisCluster


def cluster_port() -> int:
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


class RedisClusterProcess:
    """Three ``redis-server --cluster-enabled yes`` nodes, joined by ``redis-cli --cluster create``.

    (Copied from the tests' helper.)
    """

    def __init__(self, masters: int = 3) -> None:
        self.server = shutil.which("redis-server")
        self.cli = shutil.which("redis-cli")
        if self.server is None or self.cli is None:
            raise RuntimeError(
                "redis-server and redis-cli are needed (apt-get install redis-server)"
            )
        self.ports = [cluster_port() for _ in range(masters)]
        self.dir = Path(tempfile.mkdtemp(prefix="rllm-cluster-"))
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> None:
        for port in self.ports:
            node_dir = self.dir / str(port)
            node_dir.mkdir()
            self.procs.append(
                subprocess.Popen(
                    [
                        self.server,
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                        str(node_dir),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for port in self.ports:
            self._wait(
                lambda p=port: redis.Redis(
                    host="127.0.0.1", port=p, socket_connect_timeout=0.2
                ).ping()
            )
        subprocess.run(
            [
                self.cli,
                "--cluster",
                "create",
                *[f"127.0.0.1:{p}" for p in self.ports],
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )

        def ready() -> None:
            info = redis.Redis(host="127.0.0.1", port=self.ports[0]).cluster("info")
            if info.get("cluster_state") != "ok":
                raise redis.RedisError("cluster not ready")
            RedisCluster.from_url(self.url).ping()

        self._wait(ready, timeout=30)

    @staticmethod
    def _wait(probe: object, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                probe()  # type: ignore[operator]
                return
            except (redis.RedisError, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait(timeout=10)
        self.procs.clear()
        shutil.rmtree(self.dir, ignore_errors=True)
