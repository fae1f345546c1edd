"""The upstream misbehaves; tickgraph reconnects, re-subscribes, keeps serving, and
says what happened in feedStatus."""

from __future__ import annotations

import asyncio
from typing import Any

from polygon import WebSocketClient

from streams.polygon_server import Faults, start_replay_server, start_simulated_server
from tests.e2e.conftest import SettingsFactory, eventually
from tests.support.data import AMZN_REPLAY, require
from tests.support.graphql_ws import GraphQLWS, graphql_ws
from tests.support.server import running_server

QUOTES = "subscription($s: [String!]!) { quotes(symbols: $s) { symbol sequence snapshot } }"
STATUS = """subscription { feedStatus { state reconnects lastError topics
  rejected { reason count } } }"""


async def collect_quotes(client: GraphQLWS, op: str, n: int) -> list[dict[str, Any]]:
    return [(await client.next_data(op))["quotes"] for _ in range(n)]


async def test_dropped_connection_is_reestablished_and_stream_continues(
    make_settings: SettingsFactory,
) -> None:
    faults = Faults(drop_after_frames=150, drop_every_connection=False)
    async with (
        await start_replay_server(require(AMZN_REPLAY), speed=400.0, faults=faults) as upstream,
        running_server(make_settings(upstream, symbols=("AMZN",))) as srv,
    ):
        tracker = srv.runtime.services.feed_status
        async with graphql_ws(srv.ws) as client:
            op = await client.subscribe(QUOTES, {"s": ["AMZN"]})
            before = await collect_quotes(client, op, 5)
            await eventually(lambda: tracker.snapshot().reconnects >= 1, "a reconnect")
            await eventually(lambda: tracker.snapshot().connected, "reconnected")
            after = await collect_quotes(client, op, 50)
        status = tracker.snapshot()
    # Still the same subscription, still in order: the feed came back under it.
    seqs = [q["sequence"] for q in before + after]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert upstream.connections >= 2
    assert status.last_error is None  # cleared by the successful reconnect
    assert set(status.topics) == {"Q.AMZN", "T.AMZN"}


async def test_auth_failed_is_reported_then_recovered(make_settings: SettingsFactory) -> None:
    async with (
        await start_simulated_server(
            ["AMZN"], seed=7, rate=200.0, faults=Faults(auth_failures=2)
        ) as upstream,
        running_server(make_settings(upstream, symbols=("AMZN",))) as srv,
    ):
        async with graphql_ws(srv.ws) as client:
            op = await client.subscribe(STATUS)
            states = []
            while not states or states[-1]["state"] != "CONNECTED":
                states.append((await client.next_data(op))["feedStatus"])
            q = await client.subscribe(QUOTES, {"s": ["AMZN"]})
            await client.next_data(q)
    failures = [s for s in states if s["state"] == "AUTH_FAILED"]
    assert failures, states
    assert "authentication failed" in failures[0]["lastError"]
    assert states[-1]["reconnects"] >= 2


async def test_garbage_frames_are_counted_and_the_feed_goes_on(
    make_settings: SettingsFactory,
) -> None:
    async with (
        await start_simulated_server(
            ["AMZN"], seed=3, rate=500.0, faults=Faults(garbage_every=3)
        ) as upstream,
        running_server(make_settings(upstream, symbols=("AMZN",))) as srv,
    ):
        tracker = srv.runtime.services.feed_status
        async with graphql_ws(srv.ws) as client:
            op = await client.subscribe(QUOTES, {"s": ["AMZN"]})
            await collect_quotes(client, op, 30)
        await eventually(lambda: len(tracker.snapshot().rejected) >= 5, "several reasons")
        status = tracker.snapshot()
    # Every kind of garbage the fake sends is recognised for what it is.
    assert {"malformed_frame", "invalid_price", "crossed_quote", "unknown_event"} <= set(
        status.rejected
    ), status.rejected
    assert status.connected and status.reconnects == 0


async def test_eviction_backs_off_instead_of_fighting(make_settings: SettingsFactory) -> None:
    async with await start_simulated_server(
        ["AMZN"], seed=5, rate=100.0, faults=Faults(max_connections_evict=True)
    ) as upstream:
        settings = make_settings(
            upstream, symbols=("AMZN",), feed_backoff_initial_s=0.05, feed_backoff_max_s=30.0
        )
        async with running_server(settings) as srv:
            tracker = srv.runtime.services.feed_status
            await eventually(lambda: tracker.snapshot().connected, "connected")
            # Another client with "our key" takes over.
            other = WebSocketClient(
                api_key="k",
                feed=upstream.feed,
                market="stocks",
                secure=False,
                raw=True,
                subscriptions=["Q.AMZN"],
                max_reconnects=0,
            )

            async def first(_: object) -> None:
                await other.close()

            task = asyncio.create_task(other.connect(first))
            await eventually(lambda: tracker.snapshot().state.value == "evicted", "evicted")
            status = tracker.snapshot()
            task.cancel()
    assert status.next_retry_ns is not None
    # The maximum backoff (30 s, at least half of it with jitter), not a quick retry.
    assert (status.next_retry_ns - status.since_ns) / 1e9 >= 15.0
