"""The tests' private redis-server: the one rotating_llm.testing ships to users."""

from __future__ import annotations

from rotating_llm.testing._redis import RedisServer as RedisProcess
from rotating_llm.testing._redis import free_port

__all__ = ["RedisProcess", "free_port"]
