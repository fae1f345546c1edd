"""A subscription never waits in silence for a symbol the feed cannot stream, and the
prices it shows carry no float noise."""

from __future__ import annotations

from decimal import Decimal

import httpx

from server.settings import LOCAL_REPLAY_KEY, Secret
from server.storage.database import Database
from server.storage.symbols import SymbolRow, upsert_symbols
from streams.polygon_server import start_replay_server
from tests.e2e.conftest import SettingsFactory
from tests.support.data import AMZN_REPLAY, require
from tests.support.graphql_ws import graphql_ws
from tests.support.server import running_server

QUOTES = """subscription($s: [String!]!) {
  quotes(symbols: $s) { symbol bidPrice askPrice midPrice spread } }"""


async def test_a_replay_refuses_known_symbols_it_does_not_have(
    make_settings: SettingsFactory,
) -> None:
    async with await start_replay_server(require(AMZN_REPLAY), speed=20.0) as upstream:
        # As `POLYGON_WS_URL=ws://... TICKGRAPH_SYMBOLS=AMZN tickgraph serve`: no key, so
        # a local replay, which has only what it recorded.
        settings = make_settings(
            upstream, symbols=("AMZN",), polygon_api_key=Secret(LOCAL_REPLAY_KEY)
        )
        async with await Database.open(settings) as db:
            # Known from an earlier run with other symbols.
            await upsert_symbols(db.pool, [SymbolRow("GOOG", "Alphabet", "XNAS", source="test")])
        async with running_server(settings) as srv, graphql_ws(srv.ws) as client:
            refused = await client.subscribe(QUOTES, {"s": ["AMZN", "GOOG"]})
            msg = await client.recv()
            assert msg["id"] == refused and msg["type"] == "error", msg
            [error] = msg["payload"]
            assert error["extensions"] == {"code": "SYMBOL_NOT_STREAMED", "symbol": "GOOG"}
            assert "TICKGRAPH_SYMBOLS" in error["message"] and "AMZN" in error["message"]
            for query in (
                'subscription { bars(symbol: "GOOG", timeframe: M1) { kind } }',
                'subscription { trades(symbols: ["GOOG"]) { price } }',
            ):
                op = await client.subscribe(query)
                msg = await client.recv()
                assert msg["id"] == op and msg["type"] == "error", msg
                assert msg["payload"][0]["extensions"]["code"] == "SYMBOL_NOT_STREAMED"
            # What it has streams; what it knows still answers queries (stale).
            amzn = await client.subscribe(QUOTES, {"s": ["AMZN"]})
            quotes = [(await client.next_data(amzn))["quotes"] for _ in range(20)]
            async with httpx.AsyncClient(base_url=srv.http) as http:
                body = (
                    await http.post(
                        "/graphql",
                        json={"query": '{ snapshot(symbol: "GOOG") { stale quote { bidPrice } } }'},
                    )
                ).json()
    assert body == {"data": {"snapshot": {"stale": True, "quote": None}}}
    for q in quotes:
        bid, ask = Decimal(repr(q["bidPrice"])), Decimal(repr(q["askPrice"]))
        assert Decimal(repr(q["midPrice"])) == (bid + ask) / 2, q
        assert Decimal(repr(q["spread"])) == ask - bid, q
