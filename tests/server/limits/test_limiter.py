"""Both limiter backends: same decisions, shared state in Redis, bounded memory, outages.

Needs the Redis fixtures: run with ``-p tests.support.redis`` until the root conftest
registers that plugin.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from server.limits.errors import LimiterUnavailable
from server.limits.gcra import MICROS
from server.limits.limiter import (
    FailMode,
    InProcessLimiter,
    Limiter,
    LockoutPolicy,
    RedisLimiter,
)
from tests.server.limits.helpers import FakeClock, redis_limiter, unique_prefix
from tests.support.redis import free_port, running_redis
from tests.support.timing import SCALE, timeout

REPO = Path(__file__).resolve().parents[3]
LOG = "server.limits.limiter"
NEVER_REFILLS = 1 / 3600  # one cell an hour: within a test, the burst is all there is


# --- semantics, on both backends ---------------------------------------------------------


async def test_burst_then_rate_and_reset(backend: tuple[Limiter, FakeClock]) -> None:
    limiter, clock = backend
    got = [await limiter.hit("k", 10, 5) for _ in range(6)]
    assert [d.allowed for d in got] == [True] * 5 + [False]
    assert got[-1].retry_after_us == 100_000
    assert not (await limiter.hit("k", 10, 5, cost=0)).remaining
    assert (await limiter.hit("other", 10, 5)).allowed  # keys are independent
    clock.advance(0.1)
    assert (await limiter.hit("k", 10, 5)).allowed
    await limiter.reset("k")
    assert (await limiter.hit("k", 10, 5, cost=5)).allowed


async def test_lockout_doubles_up_to_the_cap(backend: tuple[Limiter, FakeClock]) -> None:
    limiter, clock = backend
    policy = LockoutPolicy(threshold=3, base_s=10, cap_s=60, forget_s=100)
    assert [await limiter.strike("u", policy) for _ in range(3)] == [0, 0, 10]
    assert await limiter.locked_for("u") == 10
    clock.advance(4)
    assert await limiter.locked_for("u") == 6
    locks = []
    for _ in range(4):
        clock.advance(await limiter.locked_for("u"))
        assert await limiter.locked_for("u") == 0
        locks.append(await limiter.strike("u", policy))
    assert locks == [20, 40, 60, 60]
    # Forgotten only ``forget_s`` after the lock ends; then the count starts over.
    clock.advance(60 + 99)
    assert await limiter.locked_for("u") == 0
    clock.advance(1)
    assert await limiter.strike("u", policy) == 0
    await limiter.reset("u")
    assert [await limiter.strike("u", policy) for _ in range(3)] == [0, 0, 10]


async def test_sitting_out_a_lock_does_not_forget_it(backend: tuple[Limiter, FakeClock]) -> None:
    limiter, clock = backend
    policy = LockoutPolicy(threshold=2, base_s=10, cap_s=1000, forget_s=5)
    assert [await limiter.strike("u", policy) for _ in range(2)] == [0, 10]
    clock.advance(14)  # the lock ended 4 s ago: still within forget_s of its end
    assert await limiter.strike("u", policy) == 20
    clock.advance(25)
    assert await limiter.strike("u", policy) == 0


async def test_impossible_arguments_raise_before_any_io(
    backend: tuple[Limiter, FakeClock],
) -> None:
    limiter, _ = backend
    with pytest.raises(ValueError):
        await limiter.hit("k", 10, 2, cost=3)
    with pytest.raises(ValueError):
        await limiter.hit("k", 0, 2)


# --- Redis and in-process agree exactly ---------------------------------------------------


async def test_redis_and_in_process_make_identical_decisions(redis_client: Redis) -> None:
    clock = FakeClock()
    local = InProcessLimiter(clock=clock)
    shared = redis_limiter(redis_client, clock=clock)
    rng = random.Random(20240605)
    buckets = {"a": (10.0, 5), "b": (3.0, 2), "c": (0.5, 8), "d": (7.0, 1)}
    policy = LockoutPolicy(threshold=3, base_s=0.4, cap_s=3, forget_s=2)
    outcomes: dict[str, int] = {"allowed": 0, "denied": 0, "locked": 0}
    for _ in range(800):
        # Mostly forward in real-looking steps, sometimes several ops at one instant.
        clock.advance_us(rng.choice([0, 1, 999, 40_000, 150_000, 700_000]))
        op = rng.random()
        if op < 0.7:
            key = rng.choice(list(buckets))
            rate, burst = buckets[key]
            cost = rng.randint(0, burst)
            mine, theirs = (
                await local.hit(key, rate, burst, cost),
                await shared.hit(key, rate, burst, cost),
            )
            assert mine == theirs
            outcomes["allowed" if mine.allowed else "denied"] += 1
        elif op < 0.82:
            lock = await local.strike("L", policy)
            assert lock == await shared.strike("L", policy)
            outcomes["locked"] += lock > 0
        elif op < 0.95:
            assert await local.locked_for("L") == await shared.locked_for("L")
        else:
            key = rng.choice([*buckets, "L"])
            await local.reset(key)
            await shared.reset(key)
    # The sequence exercised every branch, not just one.
    assert min(outcomes.values()) > 20, outcomes


async def test_production_path_uses_redis_time(redis_client: Redis) -> None:
    """Without a test clock: same pattern as the in-process limiter on the real clock."""
    interval_s = 0.3 * SCALE
    for limiter in (
        redis_limiter(redis_client),
        InProcessLimiter(),
    ):
        got = [await limiter.hit("k", 1 / interval_s, 3) for _ in range(5)]
        assert [d.allowed for d in got] == [True, True, True, False, False]
        assert [d.remaining for d in got[:3]] == [2, 1, 0]
        retry = got[3].retry_after_s
        # One interval after the first hit, less the little time the hits took.
        assert interval_s - timeout(0.01) < retry <= interval_s
        await asyncio.sleep(retry + 0.002)
        assert (await limiter.hit("k", 1 / interval_s, 3)).allowed
        assert not (await limiter.hit("k", 1 / interval_s, 3)).allowed


async def test_keys_expire_when_the_bucket_is_full_again(redis_client: Redis) -> None:
    prefix = unique_prefix()
    limiter = redis_limiter(redis_client, prefix=prefix)
    for _ in range(3):
        last = await limiter.hit("k", 10, 5)
    ttl_ms = await redis_client.pttl(prefix + "k")
    assert math.ceil(last.reset_after_us / 1000) - timeout(0.1) * 1000 < ttl_ms
    assert ttl_ms <= math.ceil(last.reset_after_us / 1000)
    policy = LockoutPolicy(threshold=1, base_s=30, cap_s=30, forget_s=60)
    await limiter.strike("lock", policy)
    lock_ttl = await redis_client.pttl(prefix + "lock")
    assert 90_000 - timeout(0.1) * 1000 < lock_ttl <= 90_000  # lock, then forget_s


async def test_a_flushed_script_cache_is_reloaded(redis_client: Redis) -> None:
    limiter = redis_limiter(redis_client)
    assert (await limiter.hit("k", 1, 2)).allowed
    await redis_client.script_flush()
    assert (await limiter.hit("k", 1, 2)).allowed
    assert not (await limiter.hit("k", 1, 2)).allowed  # the state survived the flush
    await redis_client.script_flush()
    assert await limiter.locked_for("x") == 0


# --- several processes share one limit ----------------------------------------------------


async def test_two_limiters_on_two_connections_share_the_limit(redis_url: str) -> None:
    prefix = unique_prefix()
    clients = [Redis.from_url(redis_url) for _ in range(2)]
    try:
        a, b = (redis_limiter(c, prefix=prefix) for c in clients)
        alternating = [await (a if i % 2 else b).hit("seq", NEVER_REFILLS, 10) for i in range(20)]
        assert [d.allowed for d in alternating] == [True] * 10 + [False] * 10
        assert [d.remaining for d in alternating[:10]] == list(range(9, -1, -1))

        racing = await asyncio.gather(
            *(limiter.hit("race", NEVER_REFILLS, 25) for limiter in [a, b] * 100)
        )
        assert sum(d.allowed for d in racing) == 25
    finally:
        for c in clients:
            await c.aclose()


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from redis.asyncio import Redis
    from server.limits.limiter import FailMode, RedisLimiter

    async def main() -> None:
        url, prefix, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
        client = Redis.from_url(url)
        limiter = RedisLimiter(client, fail_mode=FailMode.CLOSED, prefix=prefix, timeout_s=10)
        await client.ping()
        print("ready", flush=True)
        sys.stdin.readline()
        allowed = 0
        for _ in range(n):
            allowed += (await limiter.hit("shared", 1 / 3600, 40)).allowed
        print(allowed, flush=True)
        await client.aclose()

    asyncio.run(main())
    """
)


async def test_a_separate_os_process_shares_the_limit(redis_client: Redis, redis_url: str) -> None:
    prefix = unique_prefix()
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        redis_url,
        prefix,
        "100",
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        ready = await asyncio.wait_for(child.stdout.readline(), timeout())
        assert ready.strip() == b"ready"
        limiter = redis_limiter(redis_client, prefix=prefix)
        child.stdin.write(b"go\n")
        await child.stdin.drain()
        mine = 0
        for _ in range(100):
            mine += (await limiter.hit("shared", NEVER_REFILLS, 40)).allowed
        theirs = int(await asyncio.wait_for(child.stdout.readline(), timeout()))
        assert mine + theirs == 40
    finally:
        if child.returncode is None:
            child.kill()
        await child.wait()


# --- outages ----------------------------------------------------------------------------


@pytest_asyncio.fixture
async def dead_redis() -> AsyncIterator[Redis]:
    """A client for a port nobody listens on."""
    client = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2)
    try:
        yield client
    finally:
        await client.aclose()


def outage_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOG and "not answering" in r.msg]


async def test_fail_open_allows_everything_and_warns_once(
    dead_redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOG)
    limiter = RedisLimiter(dead_redis, fail_mode=FailMode.OPEN, timeout_s=0.2)
    started = time.monotonic()
    got = [await limiter.hit("k", NEVER_REFILLS, 2) for _ in range(50)]
    assert all(d.allowed for d in got)
    assert await limiter.strike("k", LockoutPolicy(1, 10, 10, 10)) == 0
    assert await limiter.locked_for("k") == 0
    await limiter.reset("k")
    # One timeout at most; afterwards the breaker skips Redis.
    assert time.monotonic() - started < timeout(0.2)
    assert len(outage_warnings(caplog)) == 1
    assert "failing open" in outage_warnings(caplog)[0]


async def test_fail_local_falls_back_to_this_process(dead_redis: Redis) -> None:
    limiter = RedisLimiter(dead_redis, fail_mode=FailMode.LOCAL, timeout_s=0.2)
    got = [await limiter.hit("k", NEVER_REFILLS, 2) for _ in range(5)]
    assert [d.allowed for d in got] == [True, True, False, False, False]
    policy = LockoutPolicy(threshold=2, base_s=10, cap_s=10, forget_s=10)
    assert [await limiter.strike("u", policy) for _ in range(2)] == [0, 10]
    assert 9 < await limiter.locked_for("u") <= 10
    await limiter.reset("u")
    assert await limiter.locked_for("u") == 0


async def test_fail_closed_raises_unavailable(dead_redis: Redis) -> None:
    limiter = RedisLimiter(dead_redis, fail_mode=FailMode.CLOSED, timeout_s=0.2)
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: limiter.hit("k", 1, 1),
        lambda: limiter.strike("k", LockoutPolicy(1, 1, 1, 1)),
        lambda: limiter.locked_for("k"),
        lambda: limiter.reset("k"),
    ]
    for call in calls:
        with pytest.raises(LimiterUnavailable) as caught:
            await call()
        assert caught.value.extensions["code"] == "UNAVAILABLE"


async def test_a_hung_redis_costs_one_timeout(caplog: pytest.LogCaptureFixture) -> None:
    """A server that accepts and never answers must not hang requests."""
    caplog.set_level(logging.WARNING, logger=LOG)
    silent: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silent.append(writer)  # keep it open, say nothing

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = Redis(host="127.0.0.1", port=port)
    try:
        limiter = RedisLimiter(client, fail_mode=FailMode.LOCAL, timeout_s=0.1)
        started = time.monotonic()
        assert (await limiter.hit("k", NEVER_REFILLS, 1)).allowed
        assert not (await limiter.hit("k", NEVER_REFILLS, 1)).allowed
        assert time.monotonic() - started < timeout(0.1)
        assert "TimeoutError" in outage_warnings(caplog)[0]
    finally:
        await client.aclose()
        for writer in silent:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_redis_restart_is_survived_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOG)
    with running_redis() as server:
        client = Redis.from_url(server.url, socket_connect_timeout=0.2)
        try:
            limiter = RedisLimiter(
                client, fail_mode=FailMode.LOCAL, timeout_s=timeout(0.1), retry_interval_s=0.05
            )
            got = [await limiter.hit("k", NEVER_REFILLS, 2) for _ in range(3)]
            assert [d.allowed for d in got] == [True, True, False]

            server.stop()
            assert (await limiter.hit("k", NEVER_REFILLS, 2)).allowed  # local, fresh
            assert len(outage_warnings(caplog)) == 1

            server.start()  # same port, empty data set and script cache
            deadline = time.monotonic() + timeout()
            while True:
                await asyncio.sleep(0.06)  # past retry_interval_s: the breaker probes
                decision = await limiter.hit("k", NEVER_REFILLS, 2)
                if decision.new_tat > 0 or time.monotonic() > deadline:
                    break  # new_tat is Redis TIME (µs since 1970): decided by Redis
            assert decision.allowed and decision.new_tat > 1_600_000_000 * MICROS
            assert any("answering again" in r.getMessage() for r in caplog.records)
        finally:
            await client.aclose()


# --- in-process memory ----------------------------------------------------------------------


async def test_idle_keys_are_forgotten() -> None:
    clock = FakeClock()
    limiter = InProcessLimiter(clock=clock)
    largest = 0
    for i in range(10_000):
        clock.advance(0.5)
        assert (await limiter.hit(f"user:{i}", 1, 1)).allowed  # each key lives 1 s
        largest = max(largest, len(limiter))
    assert largest <= 1024  # live keys plus one sweep's worth, however many keys came


async def test_a_full_limiter_evicts_the_keys_closest_to_recovery() -> None:
    clock = FakeClock()
    limiter = InProcessLimiter(clock=clock, max_keys=100)
    for i in range(1000):
        clock.advance_us(1)
        await limiter.hit(f"k{i}", NEVER_REFILLS, 1)
        assert len(limiter) <= 100
    assert not (await limiter.hit("k999", NEVER_REFILLS, 1)).allowed  # newest: kept
    assert (await limiter.hit("k0", NEVER_REFILLS, 1)).allowed  # oldest: evicted
    policy = LockoutPolicy(threshold=1, base_s=3600, cap_s=3600, forget_s=3600)
    await limiter.strike("locked", policy)
    assert await limiter.locked_for("locked") == 3600
    assert len(limiter) <= 100
    assert limiter.hit_now("sync", 1, 1).allowed and clock() > 1000 * MICROS
