"""Orders through the real alpaca-py ``TradingClient`` against the fake Alpaca server:
every type, time in force and class, looked up by id and client order id, replaced,
canceled, listed; and Alpaca's refusals as alpaca-py raises them."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from alpaca.common.exceptions import APIError
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
    ReplaceOrderRequest,
    StopLimitOrderRequest,
    StopLossRequest,
    StopOrderRequest,
    TakeProfitRequest,
    TrailingStopOrderRequest,
)

from tests.brokers.alpaca.conftest import (
    api_error,
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


async def test_a_client_order_id_is_unique_forever(fake: FakeAlpaca, client: TradingClient) -> None:
    request = limit_order(150, 1, client_order_id="once")
    first = await call(client.submit_order, request)
    await call(client.cancel_order_by_id, first.id)
    with pytest.raises(APIError) as exc:
        await call(client.submit_order, request)  # even after the first one ended
    assert api_error(exc.value) == (422, 40010001, "client_order_id must be unique")
    assert len(fake.account.orders) == 1


async def test_insufficient_buying_power_is_403_with_the_figures(
    fake: FakeAlpaca, client: TradingClient
) -> None:
    request = limit_order(150, 2000)
    with pytest.raises(APIError) as exc:
        await call(client.submit_order, request)
    assert api_error(exc.value) == (403, 40310000, "insufficient buying power")
    body = exc.value.response.json()
    assert (body["buying_power"], body["cost_basis"]) == ("200000", "300000")
    assert fake.account.orders == {}
    # Open buy orders hold buying power.
    await call(client.submit_order, request.model_copy(update={"qty": 1000}))
    with pytest.raises(APIError) as exc:
        await call(client.submit_order, request.model_copy(update={"qty": 400}))
    assert exc.value.response.json()["buying_power"] == "50000"


async def test_a_cash_account_cannot_sell_what_it_does_not_hold(fake: FakeAlpaca) -> None:
    account = fake.add_account("PKCASH", "cash-secret", cash="1000", multiplier="1")
    client = TradingClient(account.key_id, account.secret, url_override=fake.base_url)
    with pytest.raises(APIError) as exc:
        await call(client.submit_order, market_order(1, side=SELL))
    assert api_error(exc.value)[:2] == (403, 40310000)
    body = exc.value.response.json()
    assert body["message"] == "insufficient qty available for order (requested: 1, available: 0)"
    assert (body["available"], body["existing_qty"], body["symbol"]) == ("0", "0", "AAPL")


REFUSED: list[tuple[dict[str, Any], int, int, str]] = [
    # Bodies alpaca-py's request models would refuse before sending, or let through.
    (
        {"symbol": "AAPL", "qty": "1", "side": "buy", "type": "limit", "time_in_force": "day"},
        422,
        40010001,
        "limit_price is required for limit orders",
    ),
    (
        {"symbol": "NOPE", "qty": 1, "side": "buy", "type": "market", "time_in_force": "day"},
        422,
        40010001,
        'asset "NOPE" not found',
    ),
    (
        {"symbol": "AAPL", "qty": 0, "side": "buy", "type": "market", "time_in_force": "day"},
        422,
        40010001,
        "qty must be > 0",
    ),
    (
        {"symbol": "AAPL", "qty": "NaN", "side": "buy", "type": "market", "time_in_force": "day"},
        422,
        40010001,
        "invalid qty",
    ),
    (
        {"symbol": "AAPL", "qty": 1, "side": "up", "type": "market", "time_in_force": "day"},
        422,
        40010001,
        "invalid side: up",
    ),
    (
        {
            "symbol": "AAPL",
            "qty": 1,
            "side": "buy",
            "type": "limit",
            "limit_price": 189.555,
            "time_in_force": "day",
        },
        422,
        42210000,
        "invalid limit_price 189.555. sub-penny increment does not fulfill minimum pricing "
        "criteria",
    ),
    (
        {"symbol": "AAPL", "qty": 1.5, "side": "buy", "type": "market", "time_in_force": "gtc"},
        422,
        42210000,
        "fractional orders must be DAY orders",
    ),
    (
        {
            "symbol": "AAPL",
            "qty": 1,
            "side": "buy",
            "type": "market",
            "time_in_force": "day",
            "extended_hours": True,
        },
        422,
        42210000,
        "extended hours order must be DAY limit orders",
    ),
    (
        {
            "symbol": "AAPL",
            "qty": 1,
            "side": "buy",
            "type": "market",
            "time_in_force": "day",
            "order_class": "bracket",
            "take_profit": {"limit_price": 180},
            "stop_loss": {"stop_price": 170},
        },
        422,
        42210000,
        "take_profit.limit_price must be >= base_price + 0.01",
    ),
    (
        {
            "symbol": "AAPL",
            "qty": 1,
            "side": "buy",
            "type": "market",
            "time_in_force": "day",
            "client_order_id": "x" * 129,
        },
        422,
        40010001,
        "client_order_id must be no more than 128 characters",
    ),
]


@pytest.mark.parametrize("case", REFUSED, ids=lambda case: case[3])
async def test_invalid_orders_are_refused_with_alpacas_codes(
    fake: FakeAlpaca, client: TradingClient, case: tuple[dict[str, Any], int, int, str]
) -> None:
    body, status, code, message = case
    with pytest.raises(APIError) as exc:
        await call(client.post, "/orders", body)
    assert api_error(exc.value) == (status, code, message)
    assert fake.account.orders == {}


async def test_a_body_that_is_not_json_is_400(fake: FakeAlpaca, client: TradingClient) -> None:
    response = await call(
        lambda: client._session.post(
            f"{fake.base_url}/v2/orders",
            data=b"{not json",
            headers=client._get_default_headers(),
        )
    )
    assert response.status_code == 400
    assert response.json() == {"code": 40010000, "message": "request body format is invalid"}


async def test_unknown_orders_are_404(client: TradingClient) -> None:
    missing = "6c9a5b1e-1f7c-4a49-b6c8-111111111111"
    for attempt in (
        lambda: client.get_order_by_id(missing),
        lambda: client.cancel_order_by_id(missing),
        lambda: client.replace_order_by_id(missing, ReplaceOrderRequest(qty=1)),
        lambda: client.get_order_by_client_id("never-sent"),
    ):
        with pytest.raises(APIError) as exc:
            await call(attempt)
        assert api_error(exc.value) == (404, 40410000, "order not found")


async def test_replacing_makes_a_new_order_that_replaces_the_old(
    fake: FakeAlpaca, client: TradingClient
) -> None:
    old = await call(client.submit_order, limit_order(185, client_order_id="a"))
    fake.partial_fill(old.id, "4", "185")
    new = await call(
        client.replace_order_by_id,
        old.id,
        ReplaceOrderRequest(limit_price=186, client_order_id="a-2"),
    )
    assert new.id != old.id and new.replaces == old.id and new.client_order_id == "a-2"
    assert (new.limit_price, new.qty, new.filled_qty) == ("186", "6", "0")  # the rest
    replaced = await call(client.get_order_by_id, old.id)
    assert replaced.status == OrderStatus.REPLACED and replaced.replaced_by == new.id
    assert replaced.filled_qty == "4" and replaced.replaced_at is not None
    assert (await call(client.get_order_by_id, new.id)).status == OrderStatus.NEW
    assert fake.account.event_names(fake.order(str(old.id)))[-2:] == [
        "pending_replace",
        "replaced",
    ]

    with pytest.raises(APIError) as exc:  # the new client order id is taken for good
        await call(
            client.replace_order_by_id, new.id, ReplaceOrderRequest(qty=5, client_order_id="a")
        )
    assert api_error(exc.value) == (422, 40010001, "client_order_id must be unique")
    with pytest.raises(APIError) as exc:
        await call(client.replace_order_by_id, old.id, ReplaceOrderRequest(qty=5))
    assert api_error(exc.value) == (422, 42210000, "order is not replaceable")


async def test_a_fill_can_beat_a_replace_request(fake: FakeAlpaca, client: TradingClient) -> None:
    fake.rules.auto_replace = False
    old = await call(client.submit_order, limit_order(185))
    new = await call(client.replace_order_by_id, old.id, ReplaceOrderRequest(limit_price=187))
    assert (await call(client.get_order_by_id, old.id)).status == OrderStatus.PENDING_REPLACE
    fake.fill(old.id, "185")
    assert (await call(client.get_order_by_id, old.id)).status == OrderStatus.FILLED
    assert (await call(client.get_order_by_id, new.id)).status == OrderStatus.REJECTED
    assert fake.account.event_names(fake.order(str(old.id)))[-2:] == [
        "fill",
        "order_replace_rejected",
    ]


async def test_canceling(fake: FakeAlpaca, client: TradingClient) -> None:
    request = limit_order(150, 1)
    placed = await call(client.submit_order, request)
    assert await call(client.cancel_order_by_id, placed.id) is None  # 204, no body
    canceled = await call(client.get_order_by_id, placed.id)
    assert canceled.status == OrderStatus.CANCELED and canceled.canceled_at is not None
    assert fake.account.event_names(fake.order(str(placed.id)))[-2:] == [
        "pending_cancel",
        "canceled",
    ]
    with pytest.raises(APIError) as exc:
        await call(client.cancel_order_by_id, placed.id)
    assert api_error(exc.value) == (422, 42210000, "order is not cancelable")

    first, second = [await call(client.submit_order, request) for _ in range(2)]
    answers = await call(client.cancel_orders)
    assert {a.id for a in answers} == {first.id, second.id}
    assert {a.status for a in answers} == {200}
    assert await call(client.get_orders) == []


async def test_a_fill_can_beat_a_cancel_request(fake: FakeAlpaca, client: TradingClient) -> None:
    fake.rules.auto_cancel = False
    placed = await call(client.submit_order, limit_order(190))
    await call(client.cancel_order_by_id, placed.id)
    assert (await call(client.get_order_by_id, placed.id)).status == OrderStatus.PENDING_CANCEL
    fake.partial_fill(placed.id, "3", "190")
    assert (await call(client.get_order_by_id, placed.id)).status == OrderStatus.PENDING_CANCEL
    fake.confirm_cancel(placed.id)
    done = await call(client.get_order_by_id, placed.id)
    assert (done.status, done.filled_qty) == (OrderStatus.CANCELED, "3")

    other = await call(client.submit_order, limit_order(190))
    await call(client.cancel_order_by_id, other.id)
    fake.fill(other.id, "190")
    assert (await call(client.get_order_by_id, other.id)).status == OrderStatus.FILLED
    assert fake.account.event_names(fake.order(str(other.id)))[-2:] == [
        "fill",
        "order_cancel_rejected",
    ]


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
