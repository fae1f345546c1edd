"""The whole path with real parts: the project's replay server replaying a real
recorded day → polygon-api-client → decode → market state → bus → hub →
strawberry over uvicorn → a plain websockets graphql-transport-ws client."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import httpx

from server.market.timeframes import Timeframe
from streams.events import Quote, Trade
from streams.polygon_server import start_replay_server
from streams.recording import load_events
from tests.e2e.conftest import SettingsFactory, eventually
from tests.support.data import AMZN_REPLAY, require
from tests.support.graphql_ws import graphql_ws
from tests.support.server import running_server

QUOTES = """subscription Q($s: [String!]!) { quotes(symbols: $s) {
  symbol bidPrice bidSize bidExchange askPrice askSize askExchange midPrice spread
  sequence exchangeTime receivedAt snapshot } }"""
TRADES = """subscription T($s: [String!]!) { trades(symbols: $s) {
  symbol price size exchange id conditions tape sequence exchangeTime receivedAt
  snapshot droppedBefore } }"""


async def test_recorded_day_streams_to_a_graphql_subscriber_in_order(
    make_settings: SettingsFactory,
) -> None:
    events = load_events(require(AMZN_REPLAY))
    file_quotes = {e.q: e for e in events if type(e) is Quote}
    file_trades = [e for e in events if type(e) is Trade]
    trade_index = {t.q: n for n, t in enumerate(file_trades)}

    # 100x real time: the first minutes of the day arrive within a few seconds.
    async with await start_replay_server(AMZN_REPLAY, speed=100.0) as upstream:
        settings = make_settings(upstream, symbols=("AMZN",))
        async with running_server(settings) as srv:
            state = srv.runtime.services.state
            await eventually(
                lambda: (
                    (st := state.get("AMZN")) is not None
                    and st.last_quote is not None
                    and st.last_trade is not None
                ),
                "the first AMZN quote and trade",
            )
            async with graphql_ws(srv.ws) as client:
                qid = await client.subscribe(QUOTES, {"s": ["AMZN"]})
                tid = await client.subscribe(TRADES, {"s": ["amzn"]})
                quotes: list[dict[str, Any]] = []
                trades: list[dict[str, Any]] = []
                while len(quotes) < 300 or len(trades) < 100:
                    msg = await client.recv()
                    assert msg["type"] == "next", msg
                    assert "errors" not in msg["payload"], msg
                    data = msg["payload"]["data"]
                    if msg["id"] == qid:
                        quotes.append(data["quotes"])
                    else:
                        assert msg["id"] == tid
                        trades.append(data["trades"])

            async with httpx.AsyncClient(base_url=srv.http) as http:
                status = (
                    await http.post(
                        "/graphql",
                        json={
                            "query": "{ feedStatus { state source events "
                            "rejected { reason count } } }"
                        },
                    )
                ).json()["data"]["feedStatus"]

    # Snapshot first, then live updates, each exactly as in the file.
    assert quotes[0]["snapshot"] and not any(q["snapshot"] for q in quotes[1:])
    assert trades[0]["snapshot"] and not any(t["snapshot"] for t in trades[1:])
    sequences = [q["sequence"] for q in quotes]
    assert sequences == sorted(set(sequences)), "quotes out of order or repeated"
    now_ms = time.time() * 1000
    for q in quotes:
        src = file_quotes[q["sequence"]]
        assert q["symbol"] == "AMZN"
        assert (q["bidPrice"], q["askPrice"], q["bidSize"], q["askSize"]) == (
            src.bp,
            src.ap,
            src.bs,
            src.ask_size,
        )
        assert (q["bidExchange"], q["askExchange"]) == (src.bx, src.ax)
        assert q["exchangeTime"] == src.t
        # Exact at the feed's precision, not (bp + ap) / 2 with its float noise.
        bid, ask = Decimal(repr(src.bp)), Decimal(repr(src.ap))
        assert Decimal(repr(q["midPrice"])) == (bid + ask) / 2
        assert Decimal(repr(q["spread"])) == ask - bid
        assert now_ms - 60_000 < q["receivedAt"] <= now_ms

    live = trades[1:]
    positions = [trade_index[t["sequence"]] for t in live]
    # Trades are never conflated: consecutive prints of the file, none missing.
    assert positions == list(range(positions[0], positions[0] + len(live)))
    assert all(t["droppedBefore"] == 0 for t in live)
    for t in trades:
        src = file_trades[trade_index[t["sequence"]]]
        assert (t["price"], t["size"], t["id"], t["exchange"], t["exchangeTime"]) == (
            src.p,
            src.s,
            src.i,
            src.x,
            src.t,
        )

    assert status["state"] == "CONNECTED" and status["source"] == "polygon"
    assert status["events"] > len(quotes) and status["rejected"] == []


async def test_queries_after_replay(make_settings: SettingsFactory) -> None:
    async with await start_replay_server(require(AMZN_REPLAY), speed=None) as upstream:
        settings = make_settings(upstream, symbols=("AMZN",), trades_kept=50)
        async with running_server(settings) as srv:
            analytics = srv.runtime.services.analytics
            assert analytics is not None
            await eventually(
                lambda: (
                    (day := analytics.book.builder("AMZN").forming(Timeframe.D1)) is not None
                    and day.trades > 2000
                ),
                "a few thousand AMZN trades",
            )
            async with httpx.AsyncClient(base_url=srv.http) as http:
                body = (
                    await http.post(
                        "/graphql",
                        json={
                            "query": """{
                    snapshot(symbol: "AMZN") { symbol stale updatedAt
                      quote { bidPrice askPrice } lastTrade { price sequence }
                      day { date open high low volume vwap trades } }
                    trades(symbol: "AMZN", limit: 50) { sequence price }
                    quotes(symbols: ["AMZN"]) { symbol }
                }"""
                        },
                    )
                ).json()
    assert "errors" not in body, body
    snap = body["data"]["snapshot"]
    assert snap["day"]["date"] == "2012-06-21"
    assert snap["day"]["open"] == 223.82  # the day's first print in the file
    assert snap["day"]["low"] <= snap["day"]["vwap"] <= snap["day"]["high"]
    trades = body["data"]["trades"]
    assert len(trades) == 50
    seqs = [t["sequence"] for t in trades]
    assert seqs == sorted(seqs, reverse=True)
    assert seqs[0] == snap["lastTrade"]["sequence"]
    assert body["data"]["quotes"] == [{"symbol": "AMZN"}]
