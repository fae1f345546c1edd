"""Trading through the real server: place, fill, cancel and replace orders, watch them
on ``orderUpdates``, see positions and the account, and find everything again after a
restart. Real PostgreSQL, real WebSocket clients.

Every test runs twice: with the paper broker, and with the operator's Alpaca account on
the fake Alpaca server (``ALPACA_API_KEY_ID``/``ALPACA_API_SECRET_KEY``/
``ALPACA_BASE_URL``), whose market orders fill at its mark as they are accepted. The
paper broker answers inside ``placeOrder``; Alpaca's answers travel on its stream, so
for Alpaca ``settled`` waits for the status the paper broker returns at once."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest

from server.settings import Secret
from streams.polygon_server import start_simulated_server
from tests.e2e.conftest import SettingsFactory, eventually
from tests.support.accounts import LOGIN, PASSWORD, bearer, sign_up
from tests.support.fake_alpaca import FakeAlpaca
from tests.support.graphql_ws import graphql_ws
from tests.support.server import RunningServer, running_server
from tests.support.timing import TIMEOUT

ORDER_FIELDS = "id status symbol side type qty filledQty avgFillPrice limitPrice clientOrderId"
PLACE = f"""mutation($input: OrderInput!, $key: String, $confirm: Boolean! = false) {{
  placeOrder(input: $input, idempotencyKey: $key, confirm: $confirm) {{ {ORDER_FIELDS} }} }}"""
ACCOUNT = """{ account { cash equity startingCash buyingPower realizedPnl
  positions { symbol qty avgEntryPrice costBasis } } }"""


async def gql(http: httpx.AsyncClient, query: str, token: str, **v: Any) -> dict[str, Any]:
    response = await http.post(
        "/graphql", json={"query": query, "variables": v}, headers=bearer(token)
    )
    body: dict[str, Any] = response.json()
    return body


def code(body: dict[str, Any]) -> str:
    assert "errors" in body, body
    return str(body["errors"][0]["extensions"]["code"])


async def trader(
    http: httpx.AsyncClient, server: RunningServer, tier: str = "elite", user: Any = None
) -> str:
    """A signed-up user of ``tier``, with a token that carries it."""
    user = user or await sign_up(http)
    await server.runtime.database.pool.execute(
        "UPDATE users SET tier = $1 WHERE id = $2", tier, uuid.UUID(user["id"])
    )
    login = await http.post(
        "/graphql", json={"query": LOGIN, "variables": {"e": user["email"], "p": PASSWORD}}
    )
    token: str = login.json()["data"]["login"]["accessToken"]
    return token


async def quoted(server: RunningServer, symbol: str = "AMZN") -> Decimal:
    state = server.runtime.services.state

    def ready() -> bool:
        s = state.get(symbol)
        return s is not None and s.last_quote is not None and s.last_trade is not None

    await eventually(ready, f"a quote and a trade of {symbol}")
    s = state.get(symbol)
    assert s is not None and s.last_trade is not None
    return Decimal(repr(s.last_trade.event.p))  # type: ignore[union-attr]


@pytest.fixture
async def upstream():  # type: ignore[no-untyped-def]
    async with await start_simulated_server(["AMZN", "MSFT"], seed=11, rate=100.0) as up:
        yield up


@pytest.fixture(params=["paper", "alpaca"])
async def alpaca(request):  # type: ignore[no-untyped-def]
    """None for the paper broker; the fake Alpaca the server trades with otherwise."""
    if request.param == "paper":
        yield None
        return
    async with FakeAlpaca() as fake:
        fake.rules.auto_fill_market = True
        yield fake


@pytest.fixture
def trading_settings(make_settings: SettingsFactory, upstream, alpaca):  # type: ignore[no-untyped-def]
    extra: dict[str, Any] = {}
    if alpaca is not None:
        extra = {
            "alpaca_api_key_id": Secret(alpaca.key_id),
            "alpaca_api_secret_key": Secret(alpaca.secret),
            "alpaca_base_url": alpaca.base_url,
        }
    return make_settings(upstream, symbols=("AMZN", "MSFT"), trading_calendar="continuous", **extra)


async def settled(
    server: RunningServer, http: httpx.AsyncClient, token: str, order: dict[str, Any], status: str
) -> dict[str, Any]:
    """``order`` as a mutation returned it, which must have ``status``: at once with
    the paper broker, once Alpaca's stream has said so with Alpaca."""
    if server.settings.alpaca_api_key_id is None:
        assert order["status"] == status, order
        return order
    fields = " ".join(k for k in order if k != "status")
    query = f"query($id: ID!) {{ order(id: $id) {{ status {fields} }} }}"
    latest: dict[str, Any] = {}

    async def check() -> bool:
        nonlocal latest
        latest = (await gql(http, query, token, id=order["id"]))["data"]["order"]
        return latest["status"] == status

    async with asyncio.timeout(TIMEOUT):
        while True:
            if await check():
                break
            await asyncio.sleep(0.02)
    return {k: latest[k] for k in order}


@pytest.fixture
async def server(trading_settings):  # type: ignore[no-untyped-def]
    async with running_server(trading_settings) as srv:
        yield srv


def market(side: str, qty: str, symbol: str = "AMZN") -> dict[str, Any]:
    return {"symbol": symbol, "side": side, "type": "MARKET", "timeInForce": "DAY", "qty": qty}


def limit(side: str, qty: str, price: str, symbol: str = "AMZN") -> dict[str, Any]:
    return {
        "symbol": symbol,
        "side": side,
        "type": "LIMIT",
        "timeInForce": "GTC",
        "qty": qty,
        "limitPrice": price,
    }


async def test_a_market_order_fills_and_moves_position_cash_and_updates(server) -> None:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(base_url=server.http) as http:
        token = await trader(http, server)
        await quoted(server)
        async with graphql_ws(server.ws, payload={"token": token}) as ws:
            op = await ws.subscribe(
                "subscription { orderUpdates { cursor kind order { id status filledQty } "
                "fill { qty price } } }"
            )
            placed = await gql(http, PLACE, token, input=market("BUY", "10"))
            assert "errors" not in placed, placed
            order = await settled(server, http, token, placed["data"]["placeOrder"], "FILLED")
            assert order["filledQty"] == "10"
            price = Decimal(order["avgFillPrice"])
            kinds = []
            while "FILL" not in kinds:
                update = (await ws.next_data(op))["orderUpdates"]
                assert update["order"]["id"] == order["id"]
                kinds.append(update["kind"])
            assert kinds[-1] == "FILL"
            assert update["fill"] == {"qty": "10", "price": order["avgFillPrice"]}
        filled = await gql(
            http, "mutation($id: ID!) { cancelOrder(id: $id) { id } }", token, id=order["id"]
        )
        assert code(filled) == "ORDER_NOT_CANCELABLE"
        account = (await gql(http, ACCOUNT, token))["data"]["account"]
        assert account["startingCash"] == "100000"
        assert Decimal(account["cash"]) == Decimal(100_000) - 10 * price
        assert account["positions"] == [
            {
                "symbol": "AMZN",
                "qty": "10",
                "avgEntryPrice": str(price),
                "costBasis": str(10 * price),
            }
        ]


async def test_limit_orders_rest_cancel_and_replace(server) -> None:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(base_url=server.http) as http:
        token = await trader(http, server)
        last = await quoted(server)
        far = str((last * Decimal("0.95")).quantize(Decimal("0.01")))
        resting = (await gql(http, PLACE, token, input=limit("BUY", "5", far)))["data"][
            "placeOrder"
        ]
        resting = await settled(server, http, token, resting, "NEW")
        lower = str((last * Decimal("0.94")).quantize(Decimal("0.01")))
        replaced = await gql(
            http,
            "mutation($id: ID!, $p: Decimal!) { replaceOrder(id: $id, input: {limitPrice: $p}) "
            "{ id status limitPrice replaces } }",
            token,
            id=resting["id"],
            p=lower,
        )
        new = replaced["data"]["replaceOrder"]
        assert new["replaces"] == resting["id"] and new["limitPrice"] == lower
        new = await settled(server, http, token, new, "NEW")
        old = await gql(
            http,
            "query($id: ID!) { order(id: $id) { status replacedBy } }",
            token,
            id=resting["id"],
        )
        assert old["data"]["order"] == {"status": "REPLACED", "replacedBy": new["id"]}
        canceled = await gql(
            http, "mutation($id: ID!) { cancelOrder(id: $id) { id status } }", token, id=new["id"]
        )
        await settled(server, http, token, canceled["data"]["cancelOrder"], "CANCELED")
        again = await gql(
            http, "mutation($id: ID!) { cancelOrder(id: $id) { status } }", token, id=new["id"]
        )
        assert code(again) == "ORDER_NOT_CANCELABLE"
        page = await gql(
            http,
            "{ orders(first: 10) { edges { node { id status } } pageInfo { hasNextPage } } }",
            token,
        )
        statuses = [e["node"]["status"] for e in page["data"]["orders"]["edges"]]
        assert statuses == ["CANCELED", "REPLACED"]


async def test_one_idempotency_key_places_one_order_under_100_concurrent_requests(server) -> None:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(base_url=server.http, timeout=60) as http:
        token = await trader(http, server)
        last = await quoted(server)
        far = str((last * Decimal("0.95")).quantize(Decimal("0.01")))
        bodies = await asyncio.gather(
            *(
                gql(http, PLACE, token, input=limit("BUY", "1", far), key="retry-me-1")
                for _ in range(100)
            )
        )
        ids = {b["data"]["placeOrder"]["id"] for b in bodies}
        assert len(ids) == 1, bodies[:3]
        different = await gql(http, PLACE, token, input=limit("BUY", "2", far), key="retry-me-1")
        assert code(different) == "DUPLICATE_REQUEST"
        count = await server.runtime.database.pool.fetchval("SELECT count(*) FROM orders")
        assert count == 1


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"qty": "0"}, "INVALID_QUANTITY"),
        ({"qty": "-5"}, "INVALID_QUANTITY"),
        ({"qty": "NaN"}, "BAD_USER_INPUT"),
        ({"qty": "Infinity"}, "BAD_USER_INPUT"),
        ({"qty": "1e30"}, "BAD_USER_INPUT"),
        ({"type": "LIMIT"}, "INVALID_PRICE"),
        ({"qty": "1.5", "type": "LIMIT", "limitPrice": "1.00"}, "FRACTIONAL_NOT_ALLOWED"),
        ({"type": "STOP", "stopPrice": "1.00"}, "STOP_PRICE_WRONG_SIDE"),
        ({"symbol": "ZZZZ"}, "SYMBOL_NOT_TRADABLE"),
        (
            {
                "type": "LIMIT",
                "limitPrice": "100.00",
                "orderClass": "BRACKET",
                "takeProfit": {"limitPrice": "90.00"},
                "stopLoss": {"stopPrice": "95.00"},
            },
            "INVALID_BRACKET",
        ),
        ({"extendedHours": True}, "INVALID_TIME_IN_FORCE"),
        ({"qty": "100000"}, "MAX_ORDER_VALUE"),
    ],
)
async def test_bad_orders_get_a_precise_error_and_write_nothing(server, changes, expected) -> None:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(base_url=server.http) as http:
        token = await trader(http, server)
        await quoted(server)
        body = await gql(http, PLACE, token, input={**market("BUY", "1"), **changes})
        assert code(body) == expected, body
        assert await server.runtime.database.pool.fetchval("SELECT count(*) FROM orders") == 0


async def test_orders_are_private_and_need_the_trading_scope(server) -> None:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(base_url=server.http) as http:
        alice, bob = await trader(http, server), await trader(http, server)
        last = await quoted(server)
        far = str((last * Decimal("0.95")).quantize(Decimal("0.01")))
        mine = (await gql(http, PLACE, alice, input=limit("BUY", "1", far)))["data"]["placeOrder"]
        steal = await gql(
            http, "mutation($id: ID!) { cancelOrder(id: $id) { status } }", bob, id=mine["id"]
        )
        assert code(steal) == "ORDER_NOT_FOUND"
        peek = await gql(http, "query($id: ID!) { order(id: $id) { id } }", bob, id=mine["id"])
        assert peek["data"]["order"] is None
        key = await gql(
            http,
            'mutation { createApiKey(name: "ro", scope: "read") { secret } }',
            alice,
        )
        read_key = key["data"]["createApiKey"]["secret"]
        refused = await http.post(
            "/graphql",
            json={"query": PLACE, "variables": {"input": market("BUY", "1")}},
            headers=bearer(read_key),
        )
        assert code(refused.json()) == "FORBIDDEN"


async def test_account_positions_and_open_orders_survive_a_restart(trading_settings) -> None:  # type: ignore[no-untyped-def]
    async with running_server(trading_settings) as server:
        async with httpx.AsyncClient(base_url=server.http) as http:
            token = await trader(http, server)
            last = await quoted(server)
            for qty in ("3", "4"):
                body = await gql(http, PLACE, token, input=market("BUY", qty))
                await settled(server, http, token, body["data"]["placeOrder"], "FILLED")
            body = await gql(http, PLACE, token, input=market("SELL", "2"))
            await settled(server, http, token, body["data"]["placeOrder"], "FILLED")
            far = str((last * Decimal("0.95")).quantize(Decimal("0.01")))
            resting = (await gql(http, PLACE, token, input=limit("BUY", "1", far)))["data"][
                "placeOrder"
            ]
            resting = await settled(server, http, token, resting, "NEW")
            before = (await gql(http, ACCOUNT, token))["data"]["account"]
    async with running_server(trading_settings) as server:
        async with httpx.AsyncClient(base_url=server.http) as http:
            after = (await gql(http, ACCOUNT, token))["data"]["account"]
            assert after["cash"] == before["cash"]
            assert after["realizedPnl"] == before["realizedPnl"]
            assert after["positions"] == before["positions"]
            still = await gql(
                http, "query($id: ID!) { order(id: $id) { status } }", token, id=resting["id"]
            )
            assert still["data"]["order"]["status"] == "NEW"
            # The restored order still works: it can be canceled.
            canceled = await gql(
                http,
                "mutation($id: ID!) { cancelOrder(id: $id) { id status } }",
                token,
                id=resting["id"],
            )
            await settled(server, http, token, canceled["data"]["cancelOrder"], "CANCELED")


TRADING_ALERT = """mutation($order: OrderInput!) { createAlert(input: {symbol: "AMZN",
  conditions: [{left: {price: LAST}, op: GREATER_THAN, value: 1}], order: $order})
  { id definition } }"""


async def test_an_alert_that_trades_places_its_order_with_the_firing(server) -> None:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(base_url=server.http) as http:
        user = await sign_up(http)
        token = await trader(http, server, user=user)
        await quoted(server)
        quota = server.runtime.services.access.quota
        async with graphql_ws(server.ws, payload={"token": token}) as ws:
            op = await ws.subscribe("subscription { alertEvents { alertId order } }")
            await eventually(
                lambda: quota.usage(user["id"]).subscriptions == 1, "alertEvents running"
            )
            good = await gql(http, TRADING_ALERT, token, order=market("BUY", "2"))
            assert "errors" not in good, good
            assert good["data"]["createAlert"]["definition"]["order"]["qty"] == "2"
            bad = await gql(http, TRADING_ALERT, token, order=market("BUY", "100000"))
            assert "errors" not in bad, bad
            outcomes: dict[str, Any] = {}
            while len(outcomes) < 2:
                event = (await ws.next_data(op))["alertEvents"]
                outcomes[event["alertId"]] = event["order"]
        placed = outcomes[good["data"]["createAlert"]["id"]]
        refused = outcomes[bad["data"]["createAlert"]["id"]]
        assert refused["rejected"]["code"] == "MAX_ORDER_VALUE", refused
        order = await gql(
            http,
            "query($id: ID!) { order(id: $id) { status qty source alertId } }",
            token,
            id=placed["id"],
        )
        assert order["data"]["order"]["source"] == "alert"
        assert order["data"]["order"]["alertId"] == good["data"]["createAlert"]["id"]
        pool = server.runtime.database.pool
        assert await pool.fetchval("SELECT count(*) FROM orders") == 1
        # The order is stored with its firing: the same key, once.
        firing_key = await pool.fetchval(
            "SELECT dedup_key FROM alert_events WHERE alert_id = $1",
            uuid.UUID(good["data"]["createAlert"]["id"]),
        )
        key = await pool.fetchval("SELECT idempotency_key FROM orders")
        assert key.endswith(firing_key)


UPDATES = (
    "subscription($after: String) { orderUpdates(after: $after) { cursor kind order { id } } }"
)


async def test_order_updates_resume_from_a_cursor_with_nothing_missed(server) -> None:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(base_url=server.http) as http:
        token = await trader(http, server)
        last = await quoted(server)
        far = str((last * Decimal("0.95")).quantize(Decimal("0.01")))
        async with graphql_ws(server.ws, payload={"token": token}) as ws:
            op = await ws.subscribe(UPDATES, {"after": None})
            first = (await gql(http, PLACE, token, input=limit("BUY", "1", far)))["data"]
            seen = (await ws.next_data(op))["orderUpdates"]
            assert seen["order"]["id"] == first["placeOrder"]["id"]
            cursor = seen["cursor"]
        # While disconnected: two more orders and a cancel.
        ids = []
        for _ in range(2):
            body = await gql(http, PLACE, token, input=limit("BUY", "1", far))
            ids.append(body["data"]["placeOrder"]["id"])
        await gql(http, "mutation($id: ID!) { cancelOrder(id: $id) { id } }", token, id=ids[0])
        async with graphql_ws(server.ws, payload={"token": token}) as ws:
            op = await ws.subscribe(UPDATES, {"after": cursor})
            missed: list[dict[str, Any]] = []
            while not any(
                u["order"]["id"] == ids[0] and u["kind"] == "CANCELED" for u in missed
            ) or not any(u["order"]["id"] == ids[1] and u["kind"] == "NEW" for u in missed):
                missed.append((await ws.next_data(op))["orderUpdates"])
        # What happened while away, in ledger order: each order's own updates in the
        # order they happened (a real broker may add acknowledgements between them).
        first_kinds = [u["kind"] for u in missed if u["order"]["id"] == ids[0]]
        for before, after in (("NEW", "CANCEL_REQUESTED"), ("CANCEL_REQUESTED", "CANCELED")):
            assert first_kinds.index(before) < first_kinds.index(after), first_kinds
        assert [u["order"]["id"] for u in missed if u["kind"] == "NEW"] == ids
        cursors = [u["cursor"] for u in missed]
        assert len(set(cursors)) == len(cursors) and cursor not in cursors
        bad = await http.post(
            "/graphql",
            json={"query": '{ orders(after: "nope") { edges { cursor } } }'},
            headers=bearer(token),
        )
        assert code(bad.json()) == "BAD_USER_INPUT"


async def test_positions_and_account_stream_as_the_market_moves(server) -> None:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(base_url=server.http) as http:
        token = await trader(http, server)
        await quoted(server)
        async with (
            graphql_ws(server.ws, payload={"token": token}) as ws,
            graphql_ws(server.ws, payload={"token": token}) as ws2,
        ):
            positions = await ws.subscribe(
                "subscription { positions(throttleMs: 0) { symbol qty mark unrealizedPnl } }"
            )
            account = await ws2.subscribe(
                "subscription { account(throttleMs: 0) { equity cash positions { symbol } } }"
            )
            # The account comes first as it is: no positions yet.
            assert (await ws2.next_data(account))["account"]["positions"] == []
            body = await gql(http, PLACE, token, input=market("BUY", "4"))
            await settled(server, http, token, body["data"]["placeOrder"], "FILLED")
            marks = set()
            while len(marks) < 3:  # revalued as AMZN quotes and trades
                position = (await ws.next_data(positions))["positions"]
                assert position["symbol"] == "AMZN" and position["qty"] == "4"
                marks.add(position["mark"])
            while True:
                update = (await ws2.next_data(account))["account"]
                if update["positions"]:
                    break
            assert update["positions"] == [{"symbol": "AMZN"}]
            assert Decimal(update["equity"]) > Decimal(update["cash"])


async def test_equity_curve_and_performance_from_the_ledger(server) -> None:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(base_url=server.http) as http:
        token = await trader(http, server)
        await quoted(server)
        for side in ("BUY", "SELL", "BUY", "SELL"):
            body = await gql(http, PLACE, token, input=market(side, "10"))
            assert "errors" not in body, body
            await settled(server, http, token, body["data"]["placeOrder"], "FILLED")
        perf = await gql(
            http,
            "{ performance { trades wins losses winRate realizedPnl netRealizedPnl } "
            'portfolioHistory(timeframe: "1m") { at equity } }',
            token,
        )
        assert "errors" not in perf, perf
        result = perf["data"]["performance"]
        assert result["trades"] == 2 and result["wins"] + result["losses"] <= 2
        account = (await gql(http, ACCOUNT, token))["data"]["account"]
        assert Decimal(result["realizedPnl"]) == Decimal(account["realizedPnl"])
        curve = perf["data"]["portfolioHistory"]
        # The curve ends now: the equity at the marks of the moment it was read.
        assert curve and abs(Decimal(curve[-1]["equity"]) - Decimal(account["equity"])) < 100


async def test_the_tier_order_rate_is_enforced(server) -> None:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(base_url=server.http) as http:
        token = await trader(http, server, tier="free")  # 10 a minute, bursts of 5
        last = await quoted(server)
        far = str((last * Decimal("0.95")).quantize(Decimal("0.01")))
        codes = []
        for _ in range(8):
            body = await gql(http, PLACE, token, input=limit("BUY", "1", far))
            codes.append(code(body) if "errors" in body else "OK")
        assert codes[:5] == ["OK"] * 5
        assert "RATE_LIMITED" in codes[5:]
