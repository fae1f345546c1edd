"""The Redis bus against a real redis-server: delivery across buses, pipelining,
reference-counted subscriptions, fencing, and surviving a Redis restart."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator

import pytest
import redis
from redis.asyncio import ConnectionPool, Redis

from server.delivery.redis_bus import RedisBus
from server.delivery.redis_wire import Replies, envelope, market_codecs
from streams.events import Quote, Received, Trade
from tests.support.redis import running_redis
from tests.support.timing import TIMEOUT, eventually


def quote(sym: str, n: int) -> Received:
    return Received(
        Quote(sym=sym, bp=100.0 + n / 100, ap=100.5 + n / 100, t=1_700_000_000_000, q=n), n
    )


@contextlib.asynccontextmanager
async def started(url: str, **options: object) -> AsyncIterator[RedisBus]:
    bus = RedisBus(url, market_codecs(), **options)  # type: ignore[arg-type]
    bus.start()
    try:
        yield bus
    finally:
        await bus.close()


async def calls(client: Redis, command: str) -> int:
    stats = await client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_two_buses_deliver_each_others_events_in_order(redis_url: str) -> None:
    async with started(redis_url) as a, started(redis_url) as b:
        on_a: list[Received] = []
        on_b: list[Received] = []
        a.subscribe("Q.RBA", on_a.append)
        b.subscribe("Q.RBA", on_b.append)
        b.subscribe("T.RBA", on_b.append)
        await b.wait_subscribed(["Q.RBA", "T.RBA"], TIMEOUT)
        await a.wait_subscribed(["Q.RBA"], TIMEOUT)

        sent = [quote("RBA", n) for n in range(1, 501)]
        trade = Received(Trade(sym="RBA", p=101.25, s=300, t=1_700_000_000_001, c=(12, 37)), 9)
        for item in sent[:250]:
            a.publish("Q.RBA", item)
        a.publish("T.RBA", trade)
        for item in sent[250:]:
            a.publish("Q.RBA", item)
        # The publisher's own handler has everything at once, without Redis.
        assert on_a == sent
        await eventually(lambda: len(on_b) == 501, "b to receive every event")
        assert on_b == [*sent[:250], trade, *sent[250:]]
        # Equal objects, decoded once per process: not the publisher's instances.
        assert on_b[0] is not sent[0]

        # And the other way round; a's own echo was skipped (it got each event once).
        b.publish("Q.RBA", quote("RBA", 999))
        await eventually(lambda: len(on_a) == 501, "a to receive b's event")
        assert on_a[-1] == quote("RBA", 999)
        await asyncio.sleep(0.05)
        assert len(on_a) == 501 and len(on_b) == 502


async def test_topics_without_a_codec_stay_in_the_process(redis_url: str) -> None:
    async with started(redis_url) as a, started(redis_url) as b:
        on_a: list[object] = []
        on_b: list[object] = []
        a.subscribe("alerts.u1", on_a.append)
        b.subscribe("alerts.u1", on_b.append)
        b.subscribe("Q.RBL", on_b.append)
        await b.wait_subscribed(["Q.RBL"], TIMEOUT)
        a.publish("alerts.u1", {"not": "serialisable by the market codec"})
        a.publish("Q.RBL", quote("RBL", 1))
        await eventually(lambda: len(on_b) == 1, "the market event")
        assert on_a == [{"not": "serialisable by the market codec"}]
        assert on_b == [quote("RBL", 1)]
        assert a.topics() == ["alerts.u1"] and b.topics() == ["Q.RBL", "alerts.u1"]


async def test_a_burst_is_one_round_trip() -> None:
    with running_redis() as server:
        client = Redis.from_url(server.url)
        try:
            async with started(server.url) as a, started(server.url) as b:
                got: list[Received] = []
                b.subscribe("Q.RBP", got.append)
                await b.wait_subscribed(["Q.RBP"], TIMEOUT)
                before = await calls(client, "spublish")
                for n in range(1, 2001):  # one loop turn
                    a.publish("Q.RBP", quote("RBP", n))
                await a.wait_sent(TIMEOUT)
                assert a.sent == 2000 and a.batches == 1, (a.sent, a.batches)
                assert await calls(client, "spublish") - before == 2000
                await eventually(lambda: len(got) == 2000, "the burst")
                assert [r.event.q for r in got] == list(range(1, 2001))  # type: ignore[union-attr]
        finally:
            await client.aclose()


async def test_redis_subscription_follows_the_last_local_handler(
    redis_client: Redis, redis_url: str
) -> None:
    async def subscribers() -> int:
        counts = await redis_client.pubsub_shardnumsub("Q.RBU")
        return int(dict(counts)[b"Q.RBU"])

    async with started(redis_url) as bus:
        first: list[Received] = []
        second: list[Received] = []
        # Handlers are matched by identity: keep the bound methods.
        one, two = first.append, second.append
        bus.subscribe("Q.RBU", one)
        bus.subscribe("Q.RBU", two)
        await bus.wait_subscribed(["Q.RBU"], TIMEOUT)
        assert await subscribers() == 1  # one Redis subscription for two handlers
        bus.unsubscribe("Q.RBU", one)
        await asyncio.sleep(0.05)
        assert await subscribers() == 1 and b"Q.RBU" in bus.confirmed
        bus.unsubscribe("Q.RBU", two)
        await eventually(lambda: b"Q.RBU" not in bus.confirmed, "SUNSUBSCRIBE")
        assert await subscribers() == 0

        # Subscribed and left within one loop turn: Redis never hears of it.
        before = await calls(redis_client, "ssubscribe")
        bus.subscribe("Q.RBV", one)
        bus.unsubscribe("Q.RBV", one)
        bus.subscribe("Q.RBW", one)
        await bus.wait_subscribed(["Q.RBW"], TIMEOUT)
        assert await calls(redis_client, "ssubscribe") - before == 1


async def test_a_stale_fence_is_refused(redis_url: str) -> None:
    async with started(redis_url) as old, started(redis_url) as new, started(redis_url) as reader:
        got: list[Received] = []
        reader.subscribe("Q.RBF", got.append)
        await reader.wait_subscribed(["Q.RBF"], TIMEOUT)
        old.fence, new.fence = 7, 8
        old.publish("Q.RBF", quote("RBF", 1))
        await eventually(lambda: len(got) == 1, "the old leader's event")
        new.publish("Q.RBF", quote("RBF", 2))
        await eventually(lambda: len(got) == 2, "the new leader's event")
        old.publish("Q.RBF", quote("RBF", 3))  # woke up after its lease expired
        old.fence = 0  # stepped down: unfenced messages are refused too
        old.publish("Q.RBF", quote("RBF", 4))
        new.publish("Q.RBF", quote("RBF", 5))
        await eventually(lambda: len(got) == 3, "the new leader's next event")
        assert [r.event.q for r in got] == [1, 2, 5]  # type: ignore[union-attr]
        assert reader.stale == 2


async def test_garbage_on_a_channel_costs_only_itself(redis_client: Redis, redis_url: str) -> None:
    async with started(redis_url) as a, started(redis_url) as b:
        got: list[Received] = []
        b.subscribe("Q.RBG", got.append)
        await b.wait_subscribed(["Q.RBG"], TIMEOUT)
        await redis_client.spublish("Q.RBG", envelope(1, 0) + b"\xc1junk")
        await redis_client.spublish("Q.RBG", b"short")
        a.publish("Q.RBG", quote("RBG", 1))
        await eventually(lambda: len(got) == 1, "the good event")
        assert b.decode_errors == 1


async def test_a_redis_restart_is_survived_with_resubscription() -> None:
    with running_redis() as server:
        async with (
            started(server.url, backoff_s=(0.05, 0.2)) as a,
            started(server.url, backoff_s=(0.05, 0.2)) as b,
        ):
            states: list[bool] = []
            b.on_connection = states.append
            got: list[Received] = []
            b.subscribe("Q.RBR", got.append)
            await b.wait_subscribed(["Q.RBR"], TIMEOUT)
            a.publish("Q.RBR", quote("RBR", 1))
            await eventually(lambda: len(got) == 1, "the first event")

            server.stop()
            await eventually(lambda: not b.connected, "b to notice the outage")
            a.publish("Q.RBR", quote("RBR", 2))  # lost or late: pub/sub is at-most-once
            server.start()
            await b.wait_subscribed(["Q.RBR"], TIMEOUT)

            # Publish until the publisher's connection is back too.
            n = 3
            while not any(r.event.q >= 3 for r in got):  # type: ignore[union-attr]
                a.publish("Q.RBR", quote("RBR", n))
                n += 1
                await asyncio.sleep(0.02)
                assert n < 3 + TIMEOUT / 0.02, "no event after the restart"
            assert states[-1] is True and False in states
            qs = [r.event.q for r in got]  # type: ignore[union-attr]
            assert qs == sorted(qs) and len(set(qs)) == len(qs)
            assert b.reconnects >= 1 and a.reconnects >= 1


async def test_a_subscriber_dropped_for_its_output_buffer_recovers() -> None:
    with running_redis() as server:
        admin = redis.Redis.from_url(server.url)
        admin.config_set("client-output-buffer-limit", "pubsub 65536 0 0")
        try:
            async with started(server.url, backoff_s=(0.05, 0.2)) as b:
                got: list[Received] = []
                first_seen = threading.Event()

                def stall(item: Received) -> None:
                    got.append(item)
                    if not first_seen.is_set():
                        first_seen.set()
                        time.sleep(1.0)  # the whole loop stops reading

                b.subscribe("Q.RBO", stall)
                await b.wait_subscribed(["Q.RBO"], TIMEOUT)
                # Larger than the kernel's loopback buffers can hide.
                payload = envelope(1, 0) + b"x" * 65536

                def flood() -> None:
                    publisher = redis.Redis.from_url(server.url)
                    publisher.spublish(
                        "Q.RBO", envelope(1, 0) + market_codecs()["Q"].encode(quote("RBO", 1))
                    )
                    first_seen.wait(TIMEOUT)
                    pipe = publisher.pipeline(transaction=False)
                    for _ in range(400):  # 25 MiB while b is not reading
                        pipe.spublish("Q.RBO", payload)
                    pipe.execute()
                    publisher.close()

                thread = threading.Thread(target=flood)
                thread.start()
                await asyncio.to_thread(thread.join)
                await eventually(lambda: b.reconnects >= 1, "Redis to drop the slow subscriber")
                await b.wait_subscribed(["Q.RBO"], TIMEOUT)
                admin.spublish(
                    "Q.RBO", envelope(1, 0) + market_codecs()["Q"].encode(quote("RBO", 2))
                )
                await eventually(lambda: got[-1] == quote("RBO", 2), "an event after recovery")
        finally:
            admin.close()


@pytest.mark.parametrize("sharded", [False])
async def test_plain_pub_sub_for_redis_6(redis_url: str, sharded: bool) -> None:
    async with started(redis_url, sharded=sharded) as a, started(redis_url, sharded=sharded) as b:
        got: list[Received] = []
        b.subscribe("Q.RB6", got.append)
        await b.wait_subscribed(["Q.RB6"], TIMEOUT)
        a.publish("Q.RB6", quote("RB6", 1))
        await eventually(lambda: got == [quote("RB6", 1)], "the event over PUBLISH")


async def test_replies_are_read_straight_from_hiredis(redis_url: str) -> None:
    """The bus's throughput rests on reading many replies per socket read from redis-py's
    hiredis parser (``Replies``); it falls back silently to one await per reply, so an
    upgrade of redis-py that removes what it uses must fail here, not halve throughput."""
    pool = ConnectionPool.from_url(redis_url, protocol=2)
    conn = pool.make_connection()
    try:
        await conn.connect()
        assert Replies(conn).fast
    finally:
        await conn.disconnect()
        await pool.aclose()
