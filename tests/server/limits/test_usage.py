"""Per-user usage: subscription and symbol caps, daily counters (in process and Redis)."""

from __future__ import annotations

import calendar
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from server.errors import LimitExceeded
from server.limits.errors import LimiterUnavailable, RateLimited
from server.limits.limiter import FailMode
from server.limits.tiers import ANONYMOUS, FREE, PRO
from server.limits.usage import (
    DailyCounter,
    InProcessDailyCounter,
    RedisDailyCounter,
    SubscriptionQuota,
    Usage,
)
from tests.server.limits.helpers import unique_prefix
from tests.support.redis import free_port
from tests.support.timing import timeout

# 2024-06-05 23:59:30 UTC: thirty seconds before the quota resets.
LATE = float(calendar.timegm((2024, 6, 5, 23, 59, 30)))


def test_concurrent_subscriptions_are_capped_per_user() -> None:
    quota = SubscriptionQuota()
    leases = [quota.acquire("alice", ["AAPL"], FREE) for _ in range(FREE.concurrent_subscriptions)]
    with pytest.raises(LimitExceeded) as caught:
        quota.acquire("alice", ["AAPL"], FREE)
    err = caught.value
    assert err.extensions == {
        "code": "LIMIT_EXCEEDED",
        "resource": "subscriptions",
        "limit": 5,
        "current": 5,
    }
    assert "free tier allows 5 concurrent subscriptions" in err.message
    assert quota.acquire("bob", ["AAPL"], FREE)  # users are independent
    assert quota.acquire("alice", ["AAPL"], PRO)  # the limit is the caller's tier's

    leases[0].release()
    leases[0].release()  # idempotent: a second release frees nothing more
    assert quota.usage("alice").subscriptions == 5
    with quota.acquire("alice", ["AAPL"], PRO) as extra:
        assert quota.usage("alice").subscriptions == 6
    assert extra.released and quota.usage("alice").subscriptions == 5


def test_distinct_symbols_are_capped_across_subscriptions() -> None:
    quota = SubscriptionQuota()
    tier = ANONYMOUS  # 10 symbols, 5 subscriptions
    first = quota.acquire("u", [f"S{n}" for n in range(6)], tier)
    # Symbols already streamed do not count again.
    second = quota.acquire("u", ["S0", "S1", "S6", "S7", "S8", "S9"], tier)
    assert quota.usage("u") == Usage(2, frozenset(f"S{n}" for n in range(10)))
    with pytest.raises(LimitExceeded) as caught:
        quota.acquire("u", ["S0", "S10"], tier)
    assert caught.value.extensions["resource"] == "symbols"
    assert "would make 11" in caught.value.message
    assert quota.usage("u").subscriptions == 2  # a refused acquire takes nothing

    first.release()  # S0 and S1 are still streamed by the second subscription
    assert quota.usage("u").symbols == frozenset({"S0", "S1", "S6", "S7", "S8", "S9"})
    quota.acquire("u", ["S10", "S11", "S12", "S13"], tier)
    second.release()
    assert quota.usage("u").symbols == frozenset({"S10", "S11", "S12", "S13"})


def test_one_subscription_with_too_many_symbols_is_refused() -> None:
    quota = SubscriptionQuota()
    with pytest.raises(LimitExceeded, match="at most 10 distinct symbols"):
        quota.acquire("u", [f"S{n}" for n in range(11)], FREE)
    assert quota.usage("u") == Usage(0, frozenset())


def test_released_users_leave_nothing_behind() -> None:
    quota = SubscriptionQuota()
    leases = [quota.acquire(f"user{n}", ["AAPL", "MSFT"], FREE) for n in range(100)]
    for lease in leases:
        lease.release()
    assert quota._users == {}


# --- daily counters -----------------------------------------------------------------------


class WallClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def exercise_daily(counter: DailyCounter, clock: WallClock) -> None:
    assert [await counter.take("alice", 5, what="analyses") for _ in range(5)] == [4, 3, 2, 1, 0]
    with pytest.raises(RateLimited) as caught:
        await counter.take("alice", 5, what="analyses")
    assert caught.value.extensions == {
        "code": "RATE_LIMITED",
        "retryAfter": 30.0,
        "scope": "analyses",
        "limit": 5,
    }
    assert "resets at 00:00 UTC" in caught.value.message
    assert await counter.take("bob", 5, what="analyses") == 4
    clock.now += 30  # midnight
    assert await counter.take("alice", 5, what="analyses") == 4
    # A tier without any: "not included", not "try again tomorrow".
    with pytest.raises(LimitExceeded, match="includes no analyses"):
        await counter.take("anonymous", ANONYMOUS.analyses_per_day, what="analyses")


async def test_in_process_daily_counter() -> None:
    clock = WallClock(LATE)
    await exercise_daily(InProcessDailyCounter(clock=clock), clock)


@pytest_asyncio.fixture
async def second_client(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def test_redis_daily_counter_is_shared_and_expires(
    redis_client: Redis, second_client: Redis
) -> None:
    clock = WallClock(LATE)
    prefix = unique_prefix()
    counter = RedisDailyCounter(
        redis_client, fail_mode=FailMode.CLOSED, prefix=prefix, clock=clock, timeout_s=timeout(0.5)
    )
    await exercise_daily(counter, clock)
    day = int(LATE // 86_400)
    # Yesterday's key goes away an hour after its midnight.
    ttl_ms = await redis_client.pttl(f"{prefix}alice:{day}")
    assert 3_620_000 < ttl_ms <= 3_630_000

    other = RedisDailyCounter(
        second_client, fail_mode=FailMode.CLOSED, prefix=prefix, clock=clock, timeout_s=timeout(0.5)
    )
    assert await other.take("alice", 5, what="analyses") == 3  # the other process's count
    await redis_client.script_flush()  # a restarted Redis: the script is loaded again
    assert await counter.take("alice", 5, what="analyses") == 2


async def test_redis_daily_counter_fail_modes() -> None:
    client = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2)
    try:
        modes = {
            mode: RedisDailyCounter(client, fail_mode=mode, timeout_s=0.2) for mode in FailMode
        }
        with pytest.raises(LimiterUnavailable):
            await modes[FailMode.CLOSED].take("u", 2, what="analyses")
        assert await modes[FailMode.OPEN].take("u", 2, what="analyses") == 2
        local = modes[FailMode.LOCAL]
        assert [await local.take("u", 2, what="analyses") for _ in range(2)] == [1, 0]
        with pytest.raises(RateLimited):
            await local.take("u", 2, what="analyses")
    finally:
        await client.aclose()
