"""The throwaway Redis launchers leave nothing running when a start fails."""

from __future__ import annotations

import pytest

from rotating_llm.testing import RedisCluster, RedisServer

pytestmark = pytest.mark.redis


def test_a_failed_cluster_start_stops_the_nodes_it_started(monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = RedisCluster()
    cluster.cli = "/nonexistent/redis-cli"  # the nodes start, creating the cluster fails
    with pytest.raises(FileNotFoundError):
        cluster.start()
    assert cluster.procs == []


def test_a_server_that_cannot_start_is_not_left_behind() -> None:
    server = RedisServer()
    server.binary = "/nonexistent/redis-server"
    with pytest.raises(FileNotFoundError):
        server.start()
    assert server.proc is None
