"""Leader election by a Redis lease, against real redis-server processes: one leader,
takeover after SIGKILL and after a clean stop, stepping down when Redis is gone,
fencing tokens that keep increasing across a Redis restart."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

from redis.asyncio import Redis

from server.delivery.leadership import LeaderElection, Lease
from tests.support.redis import running_redis
from tests.support.timing import SCALE, TIMEOUT, eventually

ROOT = Path(__file__).resolve().parents[3]


class Roles:
    """What one election reported, in order."""

    def __init__(self) -> None:
        self.events: list[int] = []  # fence when elected, 0 when demoted

    def elected(self, fence: int) -> None:
        self.events.append(fence)

    def demoted(self) -> None:
        self.events.append(0)


@contextlib.asynccontextmanager
async def campaigning(
    redis: Redis, name: str, ttl_ms: int = 1500, retry_s: float = 0.1
) -> AsyncIterator[tuple[LeaderElection, Roles]]:
    roles = Roles()
    election = LeaderElection(
        Lease(redis, name, ttl_ms),
        on_elected=roles.elected,
        on_demoted=roles.demoted,
        retry_s=retry_s,
    )
    election.start()
    try:
        yield election, roles
    finally:
        await election.stop()


def lease_name() -> str:
    return f"test-{secrets.token_hex(4)}"


async def test_exactly_one_leader_and_a_clean_handover(redis_client: Redis) -> None:
    name = lease_name()
    async with (
        campaigning(redis_client, name) as (a, ra),
        campaigning(redis_client, name) as (b, rb),
        campaigning(redis_client, name) as (c, rc),
    ):
        elections = [a, b, c]
        await eventually(lambda: any(e.is_leader for e in elections), "a leader")
        await asyncio.sleep(1.0)  # several renewals and campaign rounds later
        leaders = [e for e in elections if e.is_leader]
        assert len(leaders) == 1
        leader = leaders[0]
        holder = await Lease(redis_client, name, 1500).holder()
        assert holder is not None
        assert (holder.holder, holder.fence) == (leader.holder_id, leader.fence)
        assert sum(len(r.events) for r in (ra, rb, rc)) == 1  # nobody flapped

        started = time.monotonic()
        await leader.stop()
        assert not leader.is_leader and leader.fence == 0
        rest = [e for e in elections if e is not leader]
        await eventually(lambda: any(e.is_leader for e in rest), "a successor")
        # Released, not expired: the successor needed a campaign round, not a ttl.
        assert time.monotonic() - started < 1.0 * SCALE
        successor = next(e for e in rest if e.is_leader)
        assert successor.fence > holder.fence


async def test_a_killed_leader_is_replaced_within_its_ttl(
    redis_url: str, redis_client: Redis
) -> None:
    name, ttl_ms = lease_name(), 1500
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "tests.support.lease_holder", redis_url, name, str(ttl_ms)],
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)
        assert line.startswith(b"elected "), line
        old_fence = int(line.split()[1])
        async with campaigning(redis_client, name, ttl_ms) as (follower, roles):
            await asyncio.sleep(0.5)
            assert not follower.is_leader
            killed = time.monotonic()
            proc.send_signal(signal.SIGKILL)
            await eventually(lambda: follower.is_leader, "the follower to take over")
            gap = time.monotonic() - killed
            assert gap < ttl_ms / 1000 + 1.0 * SCALE, gap  # the ttl plus a campaign round
            assert roles.events == [follower.fence] and follower.fence > old_fence
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_the_leader_steps_down_when_redis_is_gone() -> None:
    with running_redis() as server:
        redis = Redis.from_url(server.url, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            async with campaigning(redis, lease_name(), ttl_ms=1500) as (election, roles):
                await eventually(lambda: election.is_leader, "election")
                server.stop()
                stopped = time.monotonic()
                await eventually(lambda: roles.events[-1:] == [0], "stepping down")
                # Before Redis would have let the lease expire (its ttl after the
                # last renewal, which came before the stop): nobody can be elected
                # while we still think we lead.
                assert time.monotonic() - stopped < 1.5
                assert not election.is_leader and election.fence == 0
        finally:
            await redis.aclose()


async def test_fences_keep_increasing_across_a_redis_restart_without_persistence() -> None:
    """And a Redis that lost its state (or is new) holds campaigns back for one ttl,
    while the holder may take its lease back at once."""
    with running_redis() as server:
        redis = Redis.from_url(server.url)
        try:
            lease = Lease(redis, lease_name(), 1000)
            assert await lease.acquire("one") == 0  # new: quiet for one ttl
            first = await lease.acquire("one", take_back=True)
            assert first > 0 and await lease.acquire("two") == 0  # held
            server.stop()
            server.start()  # the counter and the lease are gone
            await redis.connection_pool.disconnect()
            assert await lease.acquire("two") == 0  # quiet: "one" may still lead
            second = await lease.acquire("one", take_back=True)
            assert second > first
            await redis.delete(lease.key)  # expired: after the quiet period...
            await asyncio.sleep(1.0)
            third = await lease.acquire("two")  # ...anyone may campaign again
            assert third > second
        finally:
            await redis.aclose()


async def test_a_redis_restart_does_not_move_the_lease() -> None:
    """The leader takes back the lease Redis forgot, with a higher fence it reports;
    the follower, campaigning all along, is never elected."""
    with running_redis() as server:
        redis = Redis.from_url(server.url, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            name = lease_name()
            refenced: list[int] = []
            roles = Roles()
            leader = LeaderElection(
                Lease(redis, name, 1500),
                on_elected=roles.elected,
                on_demoted=roles.demoted,
                on_refenced=refenced.append,
                retry_s=0.1,
            )
            leader.start()
            try:
                await eventually(lambda: leader.is_leader, "election")
                async with campaigning(redis, name) as (follower, follower_roles):
                    # In a thread: the restart must not stall the leader's loop (a
                    # stalled loop rightly steps down when its lease runs out).
                    await asyncio.to_thread(lambda: (server.stop(), server.start()))
                    await eventually(lambda: bool(refenced), "the lease taken back")
                    await asyncio.sleep(1.5)  # the quiet period, and campaigns after it
                    assert leader.is_leader and not follower.is_leader
                    assert follower_roles.events == []
                    assert len(roles.events) == 1  # elected once, never demoted
                    assert refenced[-1] > roles.events[0] and leader.fence == refenced[-1]
            finally:
                await leader.stop()
        finally:
            await redis.aclose()


async def test_a_leader_that_lost_its_lease_steps_down(redis_client: Redis) -> None:
    name = lease_name()
    async with campaigning(redis_client, name) as (election, roles):
        await eventually(lambda: election.is_leader, "election")
        lease = Lease(redis_client, name, 1500)
        # An operator (or an expiry during a long pause) hands the lease to another.
        await redis_client.delete(lease.key)
        intruder = await lease.acquire("intruder")
        assert intruder > roles.events[0]
        await eventually(lambda: roles.events[-1:] == [0], "stepping down")
        await asyncio.sleep(0.5)
        assert not election.is_leader  # and it did not take the lease back
        holder = await lease.holder()
        assert holder is not None and holder.holder == "intruder"


async def test_an_acquire_whose_reply_was_lost_is_ours_at_the_next_attempt(
    redis_client: Redis,
) -> None:
    lease = Lease(redis_client, lease_name(), 1500)
    first = await lease.acquire("one", take_back=True)
    assert first > 0
    # "one" never saw that reply (its wait timed out): its next campaign finds its own
    # lease and leads with the same token, instead of waiting for the lease to expire.
    assert await lease.acquire("one") == first
    assert await lease.acquire("two") == 0
