"""Subscription quotas over a deployment (``server.limits.shared_quota``), against a
real Redis: two processes' quotas share a user's limits, a release is seen by the
other process, a dead process stops counting after its ttl, and without Redis each
process still enforces its own count."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from server.errors import LimitExceeded
from server.limits.shared_quota import SharedQuota
from server.limits.tiers import FREE
from server.limits.usage import SubscriptionQuota
from tests.support.redis import free_port
from tests.support.timing import TIMEOUT


@contextlib.asynccontextmanager
async def process(redis: Redis, name: str, ttl_ms: int = 30_000) -> AsyncIterator[SharedQuota]:
    quota = SharedQuota(SubscriptionQuota(), redis, name, ttl_ms=ttl_ms)
    task = asyncio.create_task(quota.run())
    try:
        yield quota
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def user() -> str:
    return f"user-{secrets.token_hex(4)}"


async def test_two_processes_share_a_users_subscriptions(redis_client: Redis) -> None:
    alice = user()
    async with process(redis_client, "a") as a, process(redis_client, "b") as b:
        held = [await a.acquire(alice, ["AMZN"], FREE) for _ in range(3)]
        held += [await b.acquire(alice, ["AMZN"], FREE) for _ in range(2)]  # 5: FREE's limit
        with pytest.raises(LimitExceeded) as refused:
            await b.acquire(alice, ["AMZN"], FREE)
        assert refused.value.extensions["resource"] == "subscriptions"
        assert refused.value.extensions["current"] == 5
        assert b.local.usage(alice).subscriptions == 2  # a refusal takes nothing
        assert (await b.usage(alice)).subscriptions == 5
        assert await b.acquire(user(), ["AMZN"], FREE)  # users are independent

        held[0].release()  # on a: b sees it once a has published it

        async def retry() -> bool:
            try:
                held.append(await b.acquire(alice, ["AMZN"], FREE))
            except LimitExceeded:
                return False
            return True

        for _ in range(int(TIMEOUT / 0.05)):
            if await retry():
                break
            await asyncio.sleep(0.05)
        assert b.local.usage(alice).subscriptions == 3


async def test_distinct_symbols_count_over_processes(redis_client: Redis) -> None:
    bob = user()
    async with process(redis_client, "a") as a, process(redis_client, "b") as b:
        await a.acquire(bob, [f"S{n}" for n in range(6)], FREE)
        await b.acquire(bob, ["S0", "S1", "S6", "S7"], FREE)  # 8 distinct of 10
        with pytest.raises(LimitExceeded) as refused:
            await b.acquire(bob, ["S8", "S9", "S10"], FREE)
        assert refused.value.extensions["resource"] == "symbols"
        assert await b.acquire(bob, ["S8", "S9", "S0"], FREE)  # 10: allowed


async def test_a_dead_process_stops_counting_after_its_ttl(redis_client: Redis) -> None:
    carol = user()
    async with process(redis_client, "b", ttl_ms=500) as b:
        async with process(redis_client, "dead", ttl_ms=500) as dead:
            for _ in range(5):
                await dead.acquire(carol, ["AMZN"], FREE)
            with pytest.raises(LimitExceeded):
                await b.acquire(carol, ["AMZN"], FREE)
        # "dead" stopped refreshing (its leases never released: it crashed).
        await asyncio.sleep(0.6)
        assert await b.acquire(carol, ["AMZN"], FREE)


async def test_without_redis_each_process_keeps_its_own_limit() -> None:
    gone = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
    try:
        async with process(gone, "a") as a:
            dave = user()
            for _ in range(5):
                await a.acquire(dave, ["AMZN"], FREE)
            with pytest.raises(LimitExceeded):
                await a.acquire(dave, ["AMZN"], FREE)
    finally:
        await gone.aclose()
