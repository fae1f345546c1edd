"""A subscriber that stops reading costs only itself: the feed and the other
subscribers go on, and what is queued for it stays bounded (conflated quotes,
a bounded trade queue that drops the oldest)."""

from __future__ import annotations

import asyncio
import socket
import time

from streams.polygon_server import start_simulated_server
from tests.e2e.conftest import SettingsFactory, eventually
from tests.support.graphql_ws import graphql_ws
from tests.support.server import running_server
from tests.support.timing import SCALE

SYMBOLS = ["AAA", "BBB", "CCC"]
QUOTES = "subscription($s: [String!]!) { quotes(symbols: $s) { symbol sequence receivedAt } }"
TRADES = "subscription($s: [String!]!) { trades(symbols: $s) { symbol sequence droppedBefore } }"
TRADE_QUEUE = 50


def tiny_receive_buffer_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    return sock


async def test_stalled_reader_does_not_hold_back_feed_or_others(
    make_settings: SettingsFactory,
) -> None:
    async with await start_simulated_server(SYMBOLS, seed=11, rate=1500.0) as upstream:
        settings = make_settings(upstream, symbols=tuple(SYMBOLS), ws_trade_queue=TRADE_QUEUE)
        async with running_server(settings, send_buffer=8192) as srv:
            services = srv.runtime.services
            slow_sock = tiny_receive_buffer_socket(srv.port)
            async with graphql_ws(srv.ws, sock=slow_sock, max_queue=1, close_timeout=0.2) as slow:
                await slow.subscribe(QUOTES, {"s": SYMBOLS})
                await slow.subscribe(TRADES, {"s": SYMBOLS})
                # From here on the slow client never reads again.
                async with graphql_ws(srv.ws) as fast:
                    op = await fast.subscribe(QUOTES, {"s": SYMBOLS})
                    events_before = services.feed_status.events
                    received = 0
                    queued_samples: list[int] = []
                    staleness: list[float] = []
                    deadline = time.monotonic() + 3.0 * SCALE
                    while time.monotonic() < deadline:
                        quote = (await fast.next_data(op))["quotes"]
                        received += 1
                        staleness.append(time.time() * 1000 - quote["receivedAt"])
                        if received % 200 == 0:
                            queued_samples.append(services.streams.totals().queued)
                    totals = services.streams.totals()
                    events_during = services.feed_status.events - events_before

                    # The slow reader's streams are really backed up by now.
                    await eventually(
                        lambda: services.streams.totals().dropped > 0,
                        "trades dropped for the slow reader",
                    )
            # Once it is gone, everything it held is released.
            await eventually(lambda: services.streams.totals().active == 0, "streams closed")
            await eventually(lambda: services.hub.interest() == {}, "interest released")

    # The feed kept its pace (the simulator offers ~4,500 events/s; allow a loaded CI).
    assert events_during > 1000 * SCALE
    # The fast reader kept getting fresh quotes all along.
    assert received > 500
    assert sorted(staleness)[len(staleness) // 2] < 250 * SCALE
    # What waits for the slow reader is bounded: at most one quote per symbol per quote
    # stream and TRADE_QUEUE trades, however long it stalls.
    bound = 2 * len(SYMBOLS) + TRADE_QUEUE
    assert queued_samples and max(queued_samples) <= bound, queued_samples
    assert totals.conflated > 0


async def test_throttled_subscriber_gets_at_most_one_update_per_symbol_per_interval(
    make_settings: SettingsFactory,
) -> None:
    async with await start_simulated_server(SYMBOLS, seed=12, rate=1000.0) as upstream:
        async with running_server(make_settings(upstream, symbols=tuple(SYMBOLS))) as srv:
            async with graphql_ws(srv.ws) as client:
                op = await client.subscribe(
                    "subscription($s: [String!]!) { quotes(symbols: $s, throttleMs: 200) "
                    "{ symbol } }",
                    {"s": SYMBOLS},
                )
                start = time.monotonic()
                counts: dict[str, int] = {}
                while time.monotonic() - start < 1.0:
                    sym = (await client.next_data(op))["quotes"]["symbol"]
                    counts[sym] = counts.get(sym, 0) + 1
                elapsed = time.monotonic() - start
    # ~1,000 quotes/s per symbol upstream; one per 200 ms per symbol delivered
    # (+1 for the snapshot and +1 for the interval in progress).
    for sym in SYMBOLS:
        assert 1 <= counts.get(sym, 0) <= elapsed / 0.2 + 2, counts


async def test_invalid_throttle_is_rejected(make_settings: SettingsFactory) -> None:
    async with await start_simulated_server(["AAA"], seed=1, rate=10.0) as upstream:
        async with running_server(make_settings(upstream, symbols=("AAA",))) as srv:
            async with graphql_ws(srv.ws) as client:
                op = await client.subscribe(
                    'subscription { quotes(symbols: ["AAA"], throttleMs: -5) { symbol } }'
                )
                msg = await client.recv()
    assert msg["id"] == op and msg["type"] == "error"
    assert msg["payload"][0]["extensions"]["code"] == "BAD_USER_INPUT"


_ = asyncio  # the tests above run on pytest-asyncio's loop
