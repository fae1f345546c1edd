"""Orders through the real alpaca-py ``TradingClient`` against the fake Alpaca server:
every type, time in force and class, looked up by id and client order id, filled by the
venue, listed, and through a market close and open."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import (
    OrderClass,
    OrderSide,
    OrderStatus,
    OrderType,
    QueryOrderStatus,
    TimeInForce,
)
from alpaca.trading.models import Order
from alpaca.trading.requests import (
    GetOrderByIdRequest,
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    OrderRequest,
    StopLimitOrderRequest,
    StopLossRequest,
    StopOrderRequest,
    TakeProfitRequest,
    TrailingStopOrderRequest,
)

from tests.brokers.alpaca.conftest import (
    bracket_exits,
    call,
    limit_order,
    market_order,
)
from tests.support.fake_alpaca import FakeAlpaca

BUY, SELL = OrderSide.BUY, OrderSide.SELL
DAY, GTC = TimeInForce.DAY, TimeInForce.GTC


ORDER_REQUESTS: dict[str, OrderRequest] = {
    "market qty": market_order(10),
    "market notional": MarketOrderRequest(
        symbol="AAPL", notional=1000.5, side=BUY, time_in_force=DAY
    ),
    "market fractional": MarketOrderRequest(
        symbol="AAPL", qty=0.123456789, side=BUY, time_in_force=DAY
    ),
    "limit": limit_order(189.55, tif=GTC),
    "limit extended hours": LimitOrderRequest(
        symbol="AAPL", qty=10, side=BUY, time_in_force=DAY, limit_price=189, extended_hours=True
    ),
    "stop": StopOrderRequest(symbol="AAPL", qty=10, side=BUY, time_in_force=DAY, stop_price=195),
    "stop limit": StopLimitOrderRequest(
        symbol="AAPL", qty=10, side=BUY, time_in_force=GTC, stop_price=195, limit_price=196
    ),
    "trailing stop by price": TrailingStopOrderRequest(
        symbol="AAPL", qty=10, side=BUY, time_in_force=DAY, trail_price=2.5
    ),
    "trailing stop by percent": TrailingStopOrderRequest(
        symbol="AAPL", qty=10, side=BUY, time_in_force=GTC, trail_percent=1.5
    ),
    "opg": market_order(1, tif=TimeInForce.OPG),
    "cls": limit_order(190, 1, tif=TimeInForce.CLS),
    "ioc": limit_order(190, 1, tif=TimeInForce.IOC),
    "fok": market_order(1, tif=TimeInForce.FOK),
}


@pytest.mark.parametrize("name", list(ORDER_REQUESTS))
async def test_every_order_type_and_time_in_force_round_trips(
    fake: FakeAlpaca, client: TradingClient, name: str
) -> None:
    request = ORDER_REQUESTS[name].model_copy(update={"client_order_id": f"cid-{name}"})
    placed = await call(client.submit_order, request)

    assert placed.client_order_id == f"cid-{name}"
    assert placed.status == OrderStatus.PENDING_NEW  # as Alpaca answers a submit
    assert placed.type == request.type and placed.order_type == request.type
    assert placed.time_in_force == request.time_in_force
    assert placed.order_class == OrderClass.SIMPLE
    assert placed.symbol == "AAPL" and placed.side == BUY
    assert placed.filled_qty == "0" and placed.filled_avg_price is None
    fields = ["qty", "notional", "limit_price", "stop_price", "trail_price", "trail_percent"]
    if request.type == OrderType.TRAILING_STOP:
        fields.remove("stop_price")  # Alpaca shows the trailing stop's current stop
    for field in fields:
        sent = getattr(request, field, None)
        got = getattr(placed, field)
        assert (got is None) == (sent is None), field
        if sent is not None:
            assert isinstance(got, str) and Decimal(got) == Decimal(str(sent)), field
    assert placed.extended_hours == bool(request.extended_hours)
    if request.type == OrderType.TRAILING_STOP:
        assert placed.hwm == "190"  # the mark when it was placed
        offset = Decimal("2.5") if request.trail_price else Decimal("2.85")
        assert Decimal(placed.stop_price) == Decimal(190) + offset  # type: ignore[arg-type]

    by_id = await call(client.get_order_by_id, placed.id)
    by_client_id = await call(client.get_order_by_client_id, f"cid-{name}")
    assert by_id.id == by_client_id.id == placed.id
    assert by_id.status == OrderStatus.NEW  # the venue acknowledged it
    assert fake.account.event_names(fake.order(str(placed.id))) == ["pending_new", "new"]


async def test_fills_move_the_order_and_its_average_price(
    fake: FakeAlpaca, client: TradingClient
) -> None:
    placed = await call(client.submit_order, limit_order(190, client_order_id="f"))
    fake.partial_fill(placed.id, "4", "189.90")
    partly = await call(client.get_order_by_id, placed.id)
    assert (partly.status, partly.filled_qty, partly.filled_avg_price) == (
        OrderStatus.PARTIALLY_FILLED,
        "4",
        "189.9",
    )
    fake.fill(placed.id, "190.00")
    done = await call(client.get_order_by_id, placed.id)
    assert (done.status, done.filled_qty, done.filled_avg_price) == (
        OrderStatus.FILLED,
        "10",
        "189.96",
    )
    assert done.filled_at is not None and done.filled_at >= done.submitted_at
    with pytest.raises(ValueError, match="filled"):
        fake.fill(placed.id, "190")  # the venue cannot fill it twice


async def test_a_limit_order_never_fills_through_its_limit(
    fake: FakeAlpaca, client: TradingClient
) -> None:
    placed = await call(client.submit_order, limit_order(190, 1))
    with pytest.raises(ValueError, match="through the limit"):
        fake.fill(placed.id, "190.01")
    with pytest.raises(TypeError, match="not a float"):
        fake.fill(placed.id, 189.9)  # type: ignore[arg-type]


async def test_a_notional_order_fills_fractional_shares(
    fake: FakeAlpaca, client: TradingClient
) -> None:
    placed = await call(
        client.submit_order,
        MarketOrderRequest(symbol="AAPL", notional=1000, side=BUY, time_in_force=DAY),
    )
    fake.fill(placed.id, "190")
    done = await call(client.get_order_by_id, placed.id)
    assert done.status == OrderStatus.FILLED and done.qty is None and done.notional == "1000"
    assert done.filled_qty == "5.263157894"  # rounded down to 9 places, as Alpaca does


async def test_a_bracket_order_arms_its_exits_when_the_entry_fills(
    fake: FakeAlpaca, client: TradingClient
) -> None:
    placed = await call(
        client.submit_order,
        market_order(5, tif=GTC, client_order_id="bracket-1", **bracket_exits(200, 180, 179.5)),
    )
    assert placed.order_class == OrderClass.BRACKET
    assert placed.legs is not None
    take_profit, stop_loss = placed.legs
    assert (take_profit.type, take_profit.side, take_profit.limit_price) == (
        OrderType.LIMIT,
        SELL,
        "200",
    )
    assert (stop_loss.type, stop_loss.stop_price, stop_loss.limit_price) == (
        OrderType.STOP_LIMIT,
        "180",
        "179.5",
    )
    assert take_profit.status == stop_loss.status == OrderStatus.HELD
    with pytest.raises(ValueError, match="entry has not filled"):
        fake.fill(take_profit.id, "200")

    fake.fill(placed.id, "190")
    nested = await call(client.get_order_by_id, placed.id, GetOrderByIdRequest(nested=True))
    assert nested.legs is not None
    assert [leg.status for leg in nested.legs] == [OrderStatus.NEW, OrderStatus.HELD]
    flat = await call(client.get_order_by_id, placed.id)
    assert flat.legs is None  # legs only when asked for nested

    fake.fill(take_profit.id, "200")
    legs = [await call(client.get_order_by_id, leg.id) for leg in placed.legs]
    assert [leg.status for leg in legs] == [OrderStatus.FILLED, OrderStatus.CANCELED]
    assert await call(client.get_all_positions) == []


async def test_an_oco_exit_cancels_its_other_side(fake: FakeAlpaca, client: TradingClient) -> None:
    entry = await call(client.submit_order, market_order(5))
    fake.fill(entry.id, "190")
    oco = await call(
        client.submit_order,
        LimitOrderRequest(  # no limit_price: an OCO order's is its take-profit's
            symbol="AAPL",
            qty=5,
            side=SELL,
            time_in_force=GTC,
            order_class=OrderClass.OCO,
            take_profit=TakeProfitRequest(limit_price=200),
            stop_loss=StopLossRequest(stop_price=185),
        ),
    )
    assert oco.type == OrderType.LIMIT and oco.limit_price == "200"
    assert oco.legs is not None and len(oco.legs) == 1
    stop = oco.legs[0]
    assert (stop.type, stop.stop_price, stop.status) == (OrderType.STOP, "185", OrderStatus.HELD)

    fake.fill(stop.id, "184.9")  # the stop triggered and filled
    assert (await call(client.get_order_by_id, oco.id)).status == OrderStatus.CANCELED
    assert await call(client.get_all_positions) == []


async def test_an_oto_order_arms_its_one_exit(fake: FakeAlpaca, client: TradingClient) -> None:
    placed = await call(
        client.submit_order,
        limit_order(189, 3, order_class=OrderClass.OTO, stop_loss=StopLossRequest(stop_price=180)),
    )
    assert placed.legs is not None and len(placed.legs) == 1
    fake.fill(placed.id, "189")
    leg = await call(client.get_order_by_id, placed.legs[0].id)
    assert (leg.status, leg.type, leg.side) == (OrderStatus.NEW, OrderType.STOP, SELL)


async def test_listing_filters(fake: FakeAlpaca, client: TradingClient) -> None:
    def limit(symbol: str, side: OrderSide, price: float) -> LimitOrderRequest:
        return limit_order(price, 1, side=side, tif=GTC, symbol=symbol)

    aapl = await call(client.submit_order, limit("AAPL", BUY, 180))
    msft = await call(client.submit_order, limit("MSFT", BUY, 400))
    fake.fill(msft.id, "400")
    ibm = await call(client.submit_order, limit("IBM", BUY, 160))
    await call(client.cancel_order_by_id, ibm.id)
    short = await call(client.submit_order, limit("SPY", SELL, 530))

    async def ids(**filters: Any) -> list[Any]:
        orders: list[Order] = await call(client.get_orders, GetOrdersRequest(**filters))
        return [o.id for o in orders]

    assert await ids() == [short.id, aapl.id]  # open, newest first
    assert await ids(status=QueryOrderStatus.CLOSED) == [ibm.id, msft.id]
    assert await ids(status=QueryOrderStatus.ALL, direction="asc") == [
        aapl.id,
        msft.id,
        ibm.id,
        short.id,
    ]
    assert await ids(status=QueryOrderStatus.ALL, limit=2) == [short.id, ibm.id]
    assert await ids(status=QueryOrderStatus.ALL, side=SELL) == [short.id]
    assert await ids(status=QueryOrderStatus.ALL, symbols=["MSFT", "IBM"]) == [ibm.id, msft.id]
    # after/until are exclusive, to the nanosecond Alpaca stamps orders with.
    window = {
        "status": "all",
        "after": fake.order(str(msft.id)).to_json()["submitted_at"],
        "until": fake.order(str(short.id)).to_json()["submitted_at"],
    }
    assert [o["id"] for o in await call(client.get, "/orders", window)] == [str(ibm.id)]


async def test_alpaca_py_sends_after_in_microseconds_so_the_boundary_order_comes_back() -> None:
    """Alpaca's timestamps have nanoseconds; alpaca-py's datetimes keep microseconds and
    send those. ``after=order.submitted_at`` therefore includes that order itself: a
    client paging by time must expect the boundary again and dedupe by id."""
    ticks = iter(range(1_700_000_000_000_000_500, 1_800_000_000_000_000_000, 1_000_000_000))
    async with FakeAlpaca(clock=lambda: next(ticks)) as fake:
        client = TradingClient(fake.key_id, fake.secret, url_override=fake.base_url)
        request = limit_order(150, 1, tif=GTC)
        first = await call(client.submit_order, request)
        second = await call(client.submit_order, request)
        assert fake.order(str(first.id)).to_json()["submitted_at"].endswith(".000000500Z")
        after_first = GetOrdersRequest(status=QueryOrderStatus.ALL, after=first.submitted_at)
        listed = await call(client.get_orders, after_first)
        assert [o.id for o in listed] == [second.id, first.id]


async def test_listing_rolls_legs_up_only_when_nested(
    fake: FakeAlpaca, client: TradingClient
) -> None:
    bracket = await call(
        client.submit_order, limit_order(189, 1, tif=GTC, **bracket_exits(195, 185))
    )
    flat = await call(client.get_orders, GetOrdersRequest(status=QueryOrderStatus.ALL))
    nested = await call(
        client.get_orders, GetOrdersRequest(status=QueryOrderStatus.ALL, nested=True)
    )
    assert len(flat) == 3 and all(o.legs is None for o in flat)
    assert [o.id for o in nested] == [bracket.id]
    assert nested[0].legs is not None and len(nested[0].legs) == 2


async def test_market_closed_orders_wait_as_accepted(
    fake: FakeAlpaca, client: TradingClient
) -> None:
    fake.close_market()
    assert (await call(client.get_clock)).is_open is False
    placed = await call(client.submit_order, market_order(1, tif=TimeInForce.OPG))
    assert placed.status == OrderStatus.ACCEPTED
    fake.open_market()
    assert (await call(client.get_order_by_id, placed.id)).status == OrderStatus.NEW
    day = await call(client.submit_order, limit_order(150, 1))
    gtc = await call(client.submit_order, limit_order(150, 1, tif=GTC))
    fake.close_market()  # the close: DAY orders expire, GTC stay
    assert (await call(client.get_order_by_id, day.id)).status == OrderStatus.EXPIRED
    assert (await call(client.get_order_by_id, gtc.id)).status == OrderStatus.NEW


async def test_a_trailing_stop_follows_its_water_mark(
    fake: FakeAlpaca, client: TradingClient
) -> None:
    placed = await call(
        client.submit_order,
        TrailingStopOrderRequest(symbol="AAPL", qty=1, side=SELL, time_in_force=DAY, trail_price=2),
    )
    assert (placed.hwm, placed.stop_price) == ("190", "188")
    fake.set_price("AAPL", "195")
    fake.set_price("AAPL", "193")  # a sell stop only ratchets up
    moved = await call(client.get_order_by_id, placed.id)
    assert (moved.hwm, moved.stop_price) == ("195", "193")


async def test_the_close_expires_the_live_exits_of_a_day_bracket(
    fake: FakeAlpaca, client: TradingClient
) -> None:
    placed = await call(client.submit_order, market_order(1, **bracket_exits(200, 180)))
    fake.fill(placed.id, "190")
    fake.close_market()
    assert placed.legs is not None
    legs = [await call(client.get_order_by_id, leg.id) for leg in placed.legs]
    assert [leg.status for leg in legs] == [OrderStatus.EXPIRED, OrderStatus.EXPIRED]
