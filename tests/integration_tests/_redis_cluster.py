"""The tests' local Redis Cluster: the one rotating_llm.testing ships to users."""

from __future__ import annotations

from rotating_llm.testing._redis import RedisCluster as RedisClusterProcess

__all__ = ["RedisClusterProcess"]
