"""Account, positions, fills, clock and authentication through the real alpaca-py
``TradingClient`` against the fake Alpaca server."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, OrderStatus, OrderType, PositionSide, TimeInForce
from alpaca.trading.models import Order, TradeActivity
from alpaca.trading.requests import ClosePositionRequest, MarketOrderRequest

from tests.brokers.alpaca.conftest import api_error, call, market_order
from tests.support.fake_alpaca import FakeAlpaca


async def buy(fake: FakeAlpaca, client: TradingClient, symbol: str, qty: int, price: str) -> Order:
    side = OrderSide.BUY if qty > 0 else OrderSide.SELL
    order = await call(
        client.submit_order,
        MarketOrderRequest(symbol=symbol, qty=abs(qty), side=side, time_in_force=TimeInForce.DAY),
    )
    fake.fill(order.id, price)
    return order


async def test_the_account_moves_with_fills_and_marks(
    fake: FakeAlpaca, client: TradingClient
) -> None:
    start = await call(client.get_account)
    assert (start.cash, start.equity, start.buying_power, start.multiplier) == (
        "100000",
        "100000",
        "200000",
        "2",
    )
    assert start.status == "ACTIVE" and start.currency == "USD"

    await buy(fake, client, "AAPL", 100, "190.25")
    await buy(fake, client, "MSFT", -10, "400")  # a short sale
    fake.set_price("AAPL", "191.25")
    account = await call(client.get_account)
    assert account.cash == "84975"  # 100000 - 19025 + 4000
    assert account.long_market_value == "19125"
    assert account.short_market_value == "-4000"
    assert account.equity == account.portfolio_value == "100100"
    assert account.initial_margin == "11562.5"  # half the gross 23125
    assert account.buying_power == "177075"  # 2 x (equity - initial margin)
    assert account.last_equity == "100000"
    for field in ("cash", "equity", "buying_power", "long_market_value", "short_market_value"):
        value = getattr(account, field)
        assert isinstance(value, str) and "e" not in value.lower(), field


async def test_positions_long_and_short(fake: FakeAlpaca, client: TradingClient) -> None:
    await buy(fake, client, "AAPL", 10, "190")
    await buy(fake, client, "AAPL", 10, "191")
    await buy(fake, client, "MSFT", -5, "400")
    fake.set_price("MSFT", "390")

    aapl = await call(client.get_open_position, "AAPL")
    assert (aapl.qty, aapl.side, aapl.avg_entry_price) == ("20", PositionSide.LONG, "190.5")
    assert (aapl.cost_basis, aapl.market_value, aapl.unrealized_pl) == ("3810", "3820", "10")
    assert aapl.qty_available == "20" and aapl.current_price == "191"

    msft = await call(client.get_open_position, "MSFT")
    assert (msft.qty, msft.side, msft.market_value) == ("-5", PositionSide.SHORT, "-1950")
    assert (msft.unrealized_pl, msft.unrealized_plpc) == ("50", "0.025")

    by_asset_id = await call(client.get_open_position, fake.market.assets["AAPL"].id)
    assert by_asset_id.symbol == "AAPL"
    assert {p.symbol for p in await call(client.get_all_positions)} == {"AAPL", "MSFT"}
    with pytest.raises(APIError) as exc:
        await call(client.get_open_position, "IBM")
    assert api_error(exc.value) == (404, 40410000, "position does not exist")


async def test_open_sell_orders_hold_shares(fake: FakeAlpaca, client: TradingClient) -> None:
    await buy(fake, client, "AAPL", 10, "190")
    await call(client.submit_order, market_order(4, side=OrderSide.SELL))
    assert (await call(client.get_open_position, "AAPL")).qty_available == "6"


async def test_closing_positions_places_market_orders(
    fake: FakeAlpaca, client: TradingClient
) -> None:
    await buy(fake, client, "AAPL", 10, "190")
    await buy(fake, client, "MSFT", -4, "400")

    partial = await call(client.close_position, "AAPL", ClosePositionRequest(percentage="25"))
    assert (partial.type, partial.side, partial.qty) == (OrderType.MARKET, OrderSide.SELL, "2.5")
    fake.fill(partial.id, "192")
    assert (await call(client.get_open_position, "AAPL")).qty == "7.5"

    whole = await call(client.close_position, "AAPL")
    assert whole.qty == "7.5"
    # Alpaca makes up the client order id of a close: it cannot be made idempotent.
    assert whole.client_order_id and whole.client_order_id != partial.client_order_id
    fake.fill(whole.id, "192")

    results = await call(client.close_all_positions, True)
    assert [(r.symbol, r.status) for r in results] == [("MSFT", 200)]
    assert isinstance(results[0].body, Order) and results[0].body.side == OrderSide.BUY
    fake.fill(results[0].order_id, "399")
    assert await call(client.get_all_positions) == []
    account = await call(client.get_account)
    assert Decimal(account.cash) == Decimal(100000) + 10 * 2 + 4 * 1  # the realised P&L


async def test_fill_activities_for_reconciliation(fake: FakeAlpaca, client: TradingClient) -> None:
    order = await call(client.submit_order, market_order(10))
    fake.partial_fill(order.id, "3", "190")
    fake.fill(order.id, "190.5")
    await buy(fake, client, "MSFT", 1, "400")

    raw = await call(client.get, "/account/activities/FILL")
    activities = [TradeActivity(account_id=fake.account.id, **a) for a in raw]
    assert [(a.symbol, a.qty, a.cum_qty, a.leaves_qty) for a in activities] == [
        ("MSFT", 1, 1, 0),
        ("AAPL", 7, 10, 0),
        ("AAPL", 3, 3, 7),
    ]
    assert [a.order_status for a in activities] == [
        OrderStatus.FILLED,
        OrderStatus.FILLED,
        OrderStatus.PARTIALLY_FILLED,
    ]
    assert raw[2]["type"] == "partial_fill" and raw[2]["price"] == "190"
    assert {a["order_id"] for a in raw[1:]} == {str(order.id)}

    first = await call(client.get, "/account/activities/FILL", {"page_size": 2})
    rest = await call(
        client.get, "/account/activities/FILL", {"page_size": 2, "page_token": first[-1]["id"]}
    )
    assert [a["id"] for a in first + rest] == [a["id"] for a in raw]
    oldest_first = await call(client.get, "/account/activities", {"direction": "asc"})
    assert [a["id"] for a in oldest_first] == [a["id"] for a in reversed(raw)]
    after = await call(
        client.get, "/account/activities/FILL", {"after": raw[1]["transaction_time"]}
    )
    assert [a["id"] for a in after] == [raw[0]["id"]]
    assert await call(client.get, "/account/activities/DIV") == []


async def test_the_clock(fake: FakeAlpaca, client: TradingClient) -> None:
    clock = await call(client.get_clock)
    assert clock.is_open is True
    assert clock.timestamp.utcoffset() in {timedelta(hours=-5), timedelta(hours=-4)}
    assert clock.next_close > clock.timestamp and clock.next_open > clock.timestamp
    assert (clock.next_open.hour, clock.next_open.minute) == (9, 30)
    assert (clock.next_close.hour, clock.next_close.minute) == (16, 0)
    assert clock.next_open.weekday() < 5


async def test_credentials(fake: FakeAlpaca) -> None:
    wrong = TradingClient(fake.key_id, "not-the-secret", url_override=fake.base_url)
    with pytest.raises(APIError) as exc:
        await call(wrong.get_account)
    assert api_error(exc.value) == (401, 40110000, "request is not authorized")
    unknown = TradingClient("PKUNKNOWN", fake.secret, url_override=fake.base_url)
    with pytest.raises(APIError) as exc:
        await call(unknown.get_account)
    assert exc.value.status_code == 401
    # Without Alpaca's headers (here: an OAuth token instead) the gateway answers with
    # no code at all, and alpaca-py's APIError.code raises on it.
    token = TradingClient(oauth_token="token", url_override=fake.base_url)
    with pytest.raises(APIError) as exc:
        await call(token.get_account)
    assert exc.value.status_code == 403
    assert json.loads(str(exc.value)) == {"message": "forbidden."}
    with pytest.raises(KeyError):
        _ = exc.value.code
    assert fake.account.secret not in repr([vars(r) for r in fake.requests])


async def test_accounts_see_only_their_own(fake: FakeAlpaca, client: TradingClient) -> None:
    other = fake.add_account("PKOTHER", "other-secret")
    theirs = TradingClient(other.key_id, other.secret, url_override=fake.base_url)
    order = await buy(fake, client, "AAPL", 5, "190")
    with pytest.raises(APIError) as exc:
        await call(theirs.get_order_by_id, order.id)
    assert exc.value.status_code == 404
    assert await call(theirs.get_all_positions) == []
    assert (await call(theirs.get_account)).cash == "100000"


async def test_unknown_paths_answer_alpacas_404(fake: FakeAlpaca, client: TradingClient) -> None:
    with pytest.raises(APIError) as exc:
        await call(client.get, "/watchlists")
    assert (exc.value.status_code, exc.value.code) == (404, 40410000)


async def test_assets(fake: FakeAlpaca, client: TradingClient) -> None:
    fake.add_asset("HALT", "12.5", tradable=False, fractionable=False)
    asset = await call(client.get_asset, "HALT")
    assert (asset.symbol, asset.tradable, asset.fractionable) == ("HALT", False, False)
    with pytest.raises(APIError) as exc:
        await call(
            client.submit_order,
            MarketOrderRequest(symbol="HALT", qty=1, side=OrderSide.BUY, time_in_force="day"),
        )
    assert (exc.value.status_code, exc.value.code) == (422, 42210000)
    assert {a.symbol for a in await call(client.get_all_assets)} >= {"AAPL", "HALT"}


async def test_shares_held_for_orders_cannot_be_closed(
    fake: FakeAlpaca, client: TradingClient
) -> None:
    await buy(fake, client, "AAPL", 10, "190")
    await call(client.submit_order, market_order(4, side=OrderSide.SELL))
    with pytest.raises(APIError) as exc:
        await call(client.close_position, "AAPL")
    assert (exc.value.status_code, exc.value.code) == (403, 40310000)
    body = exc.value.response.json()
    assert (body["available"], body["held_for_orders"], body["existing_qty"]) == ("6", "4", "10")
    results = await call(client.close_all_positions, True)  # cancel the orders first
    assert [r.status for r in results] == [200]
