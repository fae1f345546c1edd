"""The paper broker is deterministic through the whole server: the AMZN day replayed
twice, on two fresh servers and databases, with the same orders placed at the same
point of the feed, gives the same fills and order events, byte for byte (order ids
are random, so each is named by its client order id)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import orjson

from streams.events import Quote, Trade
from streams.polygon_server import start_replay_server
from streams.recording import load_events
from tests.e2e.conftest import SettingsFactory, eventually
from tests.e2e.test_orders_e2e import PLACE, gql, trader
from tests.support.data import AMZN_REPLAY
from tests.support.server import RunningServer, running_server
from tests.support.timing import timeout

T_0935 = 1_340_285_700_000  # 2012-06-21 09:35 New York

#: Orders of every kind around the market at 9:35 (AMZN traded near $224 then).
ORDERS: list[dict[str, Any]] = [
    {"type": "LIMIT", "side": "BUY", "qty": "50", "limitPrice": "223.70", "timeInForce": "DAY"},
    {"type": "LIMIT", "side": "BUY", "qty": "500", "limitPrice": "222.00", "timeInForce": "GTC"},
    {"type": "LIMIT", "side": "SELL", "qty": "20", "limitPrice": "225.50", "timeInForce": "DAY"},
    {"type": "STOP", "side": "BUY", "qty": "10", "stopPrice": "227.00", "timeInForce": "DAY"},
    {"type": "STOP", "side": "SELL", "qty": "10", "stopPrice": "221.00", "timeInForce": "GTC"},
    {
        "type": "STOP_LIMIT",
        "side": "BUY",
        "qty": "10",
        "stopPrice": "226.00",
        "limitPrice": "226.50",
        "timeInForce": "DAY",
    },
    {
        "type": "TRAILING_STOP",
        "side": "SELL",
        "qty": "5",
        "trailPercent": "0.5",
        "timeInForce": "DAY",
    },
    {
        "type": "TRAILING_STOP",
        "side": "BUY",
        "qty": "5",
        "trailPrice": "1.00",
        "timeInForce": "DAY",
    },
    {"type": "MARKET", "side": "BUY", "qty": "30", "timeInForce": "DAY"},
    {"type": "MARKET", "side": "BUY", "qty": "7", "timeInForce": "CLS"},
    {
        "type": "LIMIT",
        "side": "BUY",
        "qty": "15",
        "limitPrice": "224.00",
        "timeInForce": "DAY",
        "orderClass": "BRACKET",
        "takeProfit": {"limitPrice": "226.00"},
        "stopLoss": {"stopPrice": "222.50"},
    },
]


async def one_day(settings_for: SettingsFactory) -> list[dict[str, Any]]:
    async with await start_replay_server(AMZN_REPLAY, speed=None) as upstream:
        upstream.pause_at(T_0935)
        settings = settings_for(upstream, symbols=("AMZN",))
        async with running_server(settings) as srv, httpx.AsyncClient(base_url=srv.http) as http:
            await eventually(upstream.paused.is_set, "the replay at 9:35", timeout(6))
            await caught_up(srv)
            token = await trader(http, srv)
            for i, terms in enumerate(ORDERS):
                body = await gql(
                    http,
                    PLACE,
                    token,
                    input={"symbol": "AMZN", "clientOrderId": f"o{i}", "timeInForce": "DAY"}
                    | terms,
                    confirm=True,
                )
                assert "errors" not in body, (terms, body)
            upstream.resume()
            await eventually(upstream.finished.is_set, "the end of the day", timeout(20))
            await eventually(lambda: applied_last(srv), "the server to apply the day", timeout(6))
            ledger = srv.runtime.services.orders
            assert ledger is not None
            await eventually(lambda: ledger.ledger.pending == 0, "the ledger written")
            return await normalized(srv)


LAST_EVENT_MS = max(e.t for e in load_events(AMZN_REPLAY) if isinstance(e, Quote | Trade))


def applied_last(srv: RunningServer) -> bool:
    st = srv.runtime.services.state.get("AMZN")
    if st is None or st.last_quote is None or st.last_trade is None:
        return False
    newest = max(st.last_quote.event.t, st.recent_trades[-1].event.t)  # type: ignore[union-attr]
    return bool(newest >= LAST_EVENT_MS)


async def caught_up(srv: RunningServer) -> None:
    def ready() -> bool:
        st = srv.runtime.services.state.get("AMZN")
        return st is not None and st.last_quote is not None and st.last_trade is not None

    await eventually(ready, "AMZN's quote and trade")


async def normalized(srv: RunningServer) -> list[dict[str, Any]]:
    """Every ledger event, each order named by a stable name, not its random id."""
    pool = srv.runtime.database.pool
    rows = await pool.fetch(
        "SELECT o.id, o.client_order_id, o.parent_id, o.role FROM orders o ORDER BY o.created_ms"
    )
    names: dict[str, str] = {}
    for r in rows:
        if r["client_order_id"] is not None:
            names[r["id"]] = r["client_order_id"]
    for r in rows:
        if r["id"] not in names and r["parent_id"] in names:
            names[r["id"]] = f"{names[r['parent_id']]}.{r['role']}"
    out = []
    for r in await pool.fetch("SELECT event FROM order_events ORDER BY seq"):
        text = r["event"]
        for order_id, name in names.items():
            text = text.replace(order_id, name)
        event = orjson.loads(text)
        out.append(event)
    return out


async def wipe(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()


async def test_the_same_day_and_orders_give_the_same_fills_byte_for_byte(
    make_settings: SettingsFactory, fresh_database_url: str
) -> None:
    first = await one_day(make_settings)
    await wipe(fresh_database_url)  # the second day on a database as fresh as the first
    second = await one_day(make_settings)
    fills = [e for e in first if "fill" in e]
    assert len(fills) >= 5, first  # the day filled most of them
    assert orjson.dumps(first) == orjson.dumps(second)
    assert not any(str(uuid.UUID(int=0)) in orjson.dumps(e).decode() for e in first)
