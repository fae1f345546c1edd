"""Cancel and replace through the real ``TradingClient`` against the fake Alpaca server,
with the races a venue admits: a fill beating a cancel or a replace request."""

from __future__ import annotations

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import (
    OrderSide,
    OrderStatus,
    TimeInForce,
)
from alpaca.trading.requests import (
    ReplaceOrderRequest,
)

from tests.brokers.alpaca.conftest import (
    api_error,
    call,
    limit_order,
)
from tests.support.fake_alpaca import FakeAlpaca

BUY, SELL = OrderSide.BUY, OrderSide.SELL
DAY, GTC = TimeInForce.DAY, TimeInForce.GTC


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
