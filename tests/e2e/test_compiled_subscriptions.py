"""The real server runs every subscription of its schema on compiled plans, and the
feed keeps up with analytic subscriptions: a replayed day at max speed, the issue's
four subscriptions (three `indicators` with many specs written inline, `bars` S1),
and every other subscription field open at the same time."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from streams.polygon_server import start_replay_server
from tests.e2e.conftest import SettingsFactory, eventually
from tests.support.accounts import sign_up
from tests.support.data import AMZN_REPLAY, require
from tests.support.graphql_ws import GraphQLWS, graphql_ws
from tests.support.server import running_server
from tests.support.timing import TIMEOUT

SPECS = (
    "[{kind: SMA, period: 5}, {kind: EMA, period: 9}, {kind: RSI}, {kind: MACD}, "
    "{kind: BBANDS, stdDev: 2}, {kind: ATR}, {kind: STOCH}, {kind: VWAP}, {kind: OBV}, "
    "{kind: ADX}, {kind: DONCHIAN}, {kind: WMA, period: 10}]"
)
VALUE = "symbol timeframe key ready final barStart coldStart outputs { name value }"
#: A caller may hold five subscriptions: the first five go on an anonymous connection,
#: the rest on a signed-in user's.
SUBSCRIPTIONS = {
    "m1": f'subscription {{ indicators(symbol: "AMZN", timeframe: M1, specs: {SPECS}) {{ {VALUE} }} }}',  # noqa: E501
    "m5": f'subscription {{ indicators(symbol: "AMZN", timeframe: M5, specs: {SPECS}) {{ {VALUE} }} }}',  # noqa: E501
    "s1": 'subscription { bars(symbol: "AMZN", timeframe: S1) { kind snapshot '
    "bar { start open high low close volume final } } }",
    "status": "subscription { feedStatus { state events topics } }",
    "quotes": 'subscription { quotes(symbols: ["AMZN"]) { symbol bidPrice midPrice '
    "sequence ... on Quote { spread } } }",
    "trades": 'subscription { trades(symbols: ["AMZN"]) { symbol price size droppedBefore } }',
    "batches": 'subscription { quoteBatches(symbols: ["AMZN"], windowMs: 50) '
    "{ droppedBefore quotes { sequence } } }",
}


async def read_all(client: GraphQLWS, counts: dict[str, int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            msg = await client.recv(timeout=0.2)
        except TimeoutError:
            continue
        if msg["type"] == "ping":
            await client.send({"type": "pong"})
            continue
        assert msg["type"] == "next" and "errors" not in msg["payload"], msg
        counts[msg["id"]] = counts.get(msg["id"], 0) + 1


async def test_the_day_at_max_speed_with_every_subscription_open(
    make_settings: SettingsFactory,
) -> None:
    async with await start_replay_server(require(AMZN_REPLAY), speed=None) as upstream:
        async with running_server(make_settings(upstream, symbols=("AMZN",))) as srv:
            services = srv.runtime.services
            counts: dict[str, int] = {}
            stop = asyncio.Event()
            async with httpx.AsyncClient(base_url=srv.http) as http:
                token = (await sign_up(http))["accessToken"]
            async with (
                graphql_ws(srv.ws) as anonymous,
                graphql_ws(srv.ws, payload={"token": token}) as user,
            ):
                for n, (op, query) in enumerate(SUBSCRIPTIONS.items()):
                    await (anonymous if n < 5 else user).subscribe(query, op_id=op)
                readers = [
                    asyncio.create_task(read_all(client, counts, stop))
                    for client in (anonymous, user)
                ]
                try:
                    # The whole day is ingested (the replay never dropped us), and
                    # every subscription got data.
                    await eventually(
                        lambda: upstream.finished.is_set() and upstream.buffered_bytes() == 0,
                        "the replay finished",
                        timeout=TIMEOUT * 6,
                    )
                    sent = upstream.events_sent
                    # The server may still be working through what the replay sent at
                    # max speed on a busy machine: wait for it, as long as the replay.
                    await eventually(
                        lambda: services.feed_status.events >= sent,
                        "every event ingested",
                        timeout=TIMEOUT * 6,
                    )
                    await eventually(
                        lambda: set(counts) == set(SUBSCRIPTIONS), f"data for all: {counts}"
                    )
                finally:
                    stop.set()
                    await asyncio.gather(*readers)
    assert upstream.slow_consumers_dropped == 0 and upstream.connections == 1
    stats: dict[str, Any] = services.mux.execution_stats()
    # Every group on a compiled plan; nothing handed back, nothing failed.
    assert stats["compiled_groups"] == len(SUBSCRIPTIONS), stats
    assert stats["graphql_groups"] == 0 and stats["graphql_executions"] == 0, stats
    assert stats["abandoned"] == 0 and stats["plan_failures"] == 0, stats
