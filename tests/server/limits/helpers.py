"""A clock the tests move by hand (in the limiters' integer microseconds), key prefixes."""

from __future__ import annotations

import uuid
from typing import Any

from redis.asyncio import Redis

from server.limits.gcra import MICROS
from server.limits.limiter import FailMode, RedisLimiter
from tests.support.timing import timeout


class FakeClock:
    def __init__(self, start_us: int = 1_000 * MICROS) -> None:
        self.now_us = start_us

    def __call__(self) -> int:
        return self.now_us

    def advance(self, seconds: float) -> None:
        self.now_us += round(seconds * MICROS)

    def advance_us(self, micros: int) -> None:
        self.now_us += micros


def unique_prefix() -> str:
    """Tests share one Redis: each limiter gets keys no other test can see."""
    return f"test:{uuid.uuid4().hex}:"


def redis_limiter(client: Redis, **overrides: Any) -> RedisLimiter:
    """A CLOSED limiter with its own keys and a generous timeout.

    Tests that are not about outages must not turn a loaded machine's slow connection
    set-up into a "Redis is down" failure.
    """
    options: dict[str, Any] = {
        "fail_mode": FailMode.CLOSED,
        "prefix": unique_prefix(),
        "timeout_s": timeout(0.5),
    }
    options.update(overrides)
    return RedisLimiter(client, **options)
