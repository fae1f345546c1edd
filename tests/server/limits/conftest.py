"""Fixtures for the limiter tests (the Redis ones come from tests.support.redis)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from server.limits.limiter import InProcessLimiter, Limiter
from tests.server.limits.helpers import FakeClock, redis_limiter


@pytest.fixture(params=["in_process", "redis"])
def backend(request: pytest.FixtureRequest) -> tuple[Limiter, FakeClock]:
    """Each backend on a fake clock (the Redis one gets it instead of TIME: tests only)."""
    clock = FakeClock()
    if request.param == "in_process":
        return InProcessLimiter(clock=clock), clock
    client: Redis = request.getfixturevalue("redis_client")
    return redis_limiter(client, clock=clock), clock
