"""What Alpaca refuses, as the fake answers it and alpaca-py raises it: duplicate client
order ids, buying power and quantity, invalid orders, unknown ids."""

from __future__ import annotations

from typing import Any

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import (
    OrderSide,
    TimeInForce,
)
from alpaca.trading.requests import (
    ReplaceOrderRequest,
)

from tests.brokers.alpaca.conftest import (
    api_error,
    call,
    limit_order,
    market_order,
)
from tests.support.fake_alpaca import FakeAlpaca

BUY, SELL = OrderSide.BUY, OrderSide.SELL
DAY, GTC = TimeInForce.DAY, TimeInForce.GTC


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
