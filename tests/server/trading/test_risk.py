"""Pre-trade risk checks: each refusal with its own code, in the documented order."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from server.limits.tiers import FREE, PRO, TierLimits
from server.trading.account import Account
from server.trading.errors import RiskRejected, TickgraphError
from server.trading.model import Side
from server.trading.risk import (
    MarketView,
    OpenOrder,
    RiskConfig,
    RiskContext,
    check_order,
    estimate,
    opening_value,
)
from server.trading.validation import parse_order
from tests.brokers.paper.helpers import ny
from tests.server.trading.helpers import fill

D = Decimal
NOON = ny(12, 0)
MARKET = MarketView("AMZN", last=D("100.00"), bid=D("99.99"), ask=D("100.01"))


def ctx(
    *,
    cash: str = "100000",
    limits: TierLimits = PRO,
    market: MarketView = MARKET,
    open_orders: tuple[OpenOrder, ...] = (),
    fills: tuple[Any, ...] = (),
    now: int = NOON,
    confirm: bool = False,
) -> RiskContext:
    account = Account.open(D(cash))
    for f in fills:
        account.apply(f)
    return RiskContext(
        account=account,
        marks={"AMZN": D("100.00")},
        open_orders=open_orders,
        limits=limits,
        market=market,
        now_ms=now,
        confirm=confirm,
    )


def order(**doc: Any) -> Any:
    base = {
        "symbol": "AMZN",
        "side": "buy",
        "type": "limit",
        "timeInForce": "day",
        "qty": "10",
        "limitPrice": "100",
    }
    return parse_order({k: v for k, v in {**base, **doc}.items() if v is not None})


def refused(request: Any, context: RiskContext) -> TickgraphError:
    with pytest.raises(RiskRejected) as info:
        check_order(request, context)
    return info.value


def test_a_good_order_passes_with_its_estimate() -> None:
    est = check_order(order(), ctx())
    assert (est.price, est.qty, est.value) == (D("100"), D(10), D("1000.00"))


def test_symbol_not_tradable() -> None:
    err = refused(order(), ctx(market=MarketView("AMZN", tradable=False, reason="halted")))
    assert err.code == "SYMBOL_NOT_TRADABLE" and err.extensions["reason"] == "halted"


@pytest.mark.parametrize(
    ("doc", "at"),
    [
        ({"timeInForce": "ioc"}, ny(8, 0)),
        ({"timeInForce": "fok"}, ny(17, 0)),
        ({"timeInForce": "opg"}, ny(9, 29)),
        ({"timeInForce": "cls"}, ny(15, 55)),
    ],
)
def test_market_closed(doc: dict[str, str], at: int) -> None:
    err = refused(order(**doc), ctx(now=at))
    assert err.code == "MARKET_CLOSED" and "nextOpen" in err.extensions


def test_orders_outside_hours_are_taken_for_the_next_session() -> None:
    check_order(order(type="market", limitPrice=None), ctx(now=ny(2, 0)))
    check_order(order(timeInForce="gtc"), ctx(now=ny(21, 0)))


def test_market_data_unavailable() -> None:
    nothing = MarketView("AMZN")
    assert refused(order(type="market", limitPrice=None), ctx(market=nothing)).code == (
        "MARKET_DATA_UNAVAILABLE"
    )
    assert refused(
        order(type="trailing_stop", limitPrice=None, trailPrice="1"), ctx(market=nothing)
    ).code == ("MARKET_DATA_UNAVAILABLE")


def test_stops_on_the_wrong_side_of_the_market() -> None:
    buy_stop = order(type="stop", limitPrice=None, stopPrice="99.50")
    with pytest.raises(TickgraphError) as info:
        check_order(buy_stop, ctx())
    err = info.value
    assert err.code == "STOP_PRICE_WRONG_SIDE" and err.extensions["marketPrice"] == "100.00"
    check_order(order(type="stop", limitPrice=None, stopPrice="100.50"), ctx())
    with pytest.raises(TickgraphError, match="below the market"):
        check_order(
            order(side="sell", type="stop", limitPrice=None, stopPrice="100"),
            ctx(fills=(fill("x", 1, "10", "90"),)),
        )


def test_a_market_bracket_is_judged_against_the_market() -> None:
    doc = {"type": "market", "limitPrice": None, "orderClass": "bracket"}
    check_order(order(**doc, takeProfit={"limitPrice": "110"}, stopLoss={"stopPrice": "95"}), ctx())
    with pytest.raises(TickgraphError) as info:
        check_order(
            order(**doc, takeProfit={"limitPrice": "99"}, stopLoss={"stopPrice": "95"}), ctx()
        )
    assert info.value.code == "INVALID_BRACKET"
    with pytest.raises(TickgraphError) as info:
        check_order(
            order(**doc, takeProfit={"limitPrice": "110"}, stopLoss={"stopPrice": "101"}), ctx()
        )
    assert info.value.code == "STOP_PRICE_WRONG_SIDE"
    with pytest.raises(TickgraphError) as info:
        check_order(
            order(**doc, takeProfit={"limitPrice": "110"}, stopLoss={"stopPrice": "95"}),
            ctx(market=MarketView("AMZN")),
        )
    assert info.value.code == "MARKET_DATA_UNAVAILABLE"


def test_price_out_of_band_unless_confirmed() -> None:
    err = refused(order(limitPrice="111"), ctx())
    assert err.code == "PRICE_OUT_OF_BAND"
    assert err.extensions["lastPrice"] == "100.00" and err.extensions["bandPercent"] == "10"
    check_order(order(limitPrice="110"), ctx())  # exactly 10%
    check_order(order(limitPrice="111"), ctx(confirm=True))
    assert refused(
        order(limitPrice="89.99", side="sell"), ctx(fills=(fill("x", 1, "10", "90"),))
    ).code == ("PRICE_OUT_OF_BAND")
    # No trade yet: the quote's midpoint; nothing at all: confirm needed.
    quoted = MarketView("AMZN", bid=D("50"), ask=D("50.02"))
    check_order(order(limitPrice="50"), ctx(market=quoted))
    assert refused(order(), ctx(market=MarketView("AMZN"))).code == "PRICE_OUT_OF_BAND"


def test_max_order_value_per_tier() -> None:
    err = refused(order(qty="300"), ctx(limits=FREE))
    assert err.code == "MAX_ORDER_VALUE"
    assert err.extensions == {"code": "MAX_ORDER_VALUE", "value": "30000.00", "limit": "25000"}
    check_order(order(qty="300"), ctx(limits=PRO))


def test_short_selling_needs_margin_and_whole_shares() -> None:
    sell = order(side="sell")
    assert refused(sell, ctx(limits=FREE)).code == "SHORT_NOT_ALLOWED"
    check_order(sell, ctx(limits=PRO))
    check_order(sell, ctx(limits=FREE, fills=(fill("x", 1, "10", "90"),)))
    # Shares already promised to an open sell order are not available again.
    promised = (OpenOrder("AMZN", Side.SELL, D("100"), remaining_qty=D(5)),)
    assert refused(
        sell, ctx(limits=FREE, fills=(fill("x", 1, "10", "90"),), open_orders=promised)
    ).code == ("SHORT_NOT_ALLOWED")
    fractional = order(side="sell", type="market", limitPrice=None, qty="0.5")
    assert refused(fractional, ctx(limits=PRO)).code == "SHORT_NOT_ALLOWED"


def test_max_position_counts_open_orders_and_lets_a_position_shrink() -> None:
    limits = replace(PRO, max_position_value=D(5_000))
    check_order(order(qty="50"), ctx(limits=limits))
    pending = (OpenOrder("AMZN", Side.BUY, D("100"), remaining_qty=D(10)),)
    err = refused(order(qty="45"), ctx(limits=limits, open_orders=pending))
    assert err.code == "MAX_POSITION" and err.extensions["value"] == "5500.00"
    big = (fill("x", 1, "100", "100"),)  # already $10,000
    check_order(order(side="sell", qty="10"), ctx(limits=limits, fills=big))


def test_buying_power_cash_account() -> None:
    err = refused(order(qty="20"), ctx(cash="1500", limits=FREE))
    assert err.code == "INSUFFICIENT_BUYING_POWER"
    assert err.extensions["required"] == "2000.00" and err.extensions["available"] == "1500"
    # Open orders reserve buying power.
    reserved = (OpenOrder("AMZN", Side.BUY, D("100"), remaining_qty=D(10)),)
    assert refused(order(qty="6"), ctx(cash="1500", limits=FREE, open_orders=reserved)).code == (
        "INSUFFICIENT_BUYING_POWER"
    )
    check_order(order(qty="5"), ctx(cash="1500", limits=FREE, open_orders=reserved))


def test_buying_power_margin_and_covering() -> None:
    check_order(order(qty="150"), ctx(cash="10000", limits=PRO))  # $15,000 on $10,000 equity
    assert (
        refused(order(qty="201"), ctx(cash="10000", limits=PRO)).code == "INSUFFICIENT_BUYING_POWER"
    )
    # Covering a short needs no buying power for the part that closes.
    short = (fill("x", 1, "100", "100", side=Side.SELL),)
    check_order(order(qty="100"), ctx(cash="1000", limits=PRO, fills=short))
    assert opening_value(Side.BUY, D(150), D(100), D(-100)) == D("5000.00")
    assert opening_value(Side.SELL, D(150), D(100), D(100)) == D("5000.00")
    assert opening_value(Side.SELL, D(50), D(100), D(100)) == D(0)


def test_notional_orders_need_their_notional() -> None:
    est = check_order(order(type="market", limitPrice=None, qty=None, notional="505"), ctx())
    assert est.value == D("505") and est.price == D("101.02")  # the ask + 1%, up to the cent
    assert est.qty == D("4.999010097")  # what $505 buys at that price, to the billionth
    assert refused(
        order(type="market", limitPrice=None, qty=None, notional="2000"),
        ctx(cash="1500", limits=FREE),
    ).code == ("INSUFFICIENT_BUYING_POWER")


def test_estimates() -> None:
    config = RiskConfig()
    spec = order(type="market", limitPrice=None).entry
    assert estimate(spec, MARKET, config).price == D("101.02")  # ask + 1%
    sell = order(type="market", limitPrice=None, side="sell").entry
    assert estimate(sell, MARKET, config).price == D("100.99")  # bid + 1%: a wider reservation
    stop = order(type="stop", limitPrice=None, stopPrice="105").entry
    assert estimate(stop, MARKET, config).price == D("106.05")
    trailing = order(type="trailing_stop", limitPrice=None, trailPercent="2").entry
    assert estimate(trailing, MARKET, config).price == D("101.00")
    stop_limit = order(type="stop_limit", stopPrice="105", limitPrice="106").entry
    assert estimate(stop_limit, MARKET, config).price == D("106")


def test_the_first_failure_in_the_documented_order_wins() -> None:
    # Closed and too big and out of band: the session is checked first.
    err = refused(
        order(timeInForce="ioc", qty="1000", limitPrice="150"), ctx(now=ny(8, 0), limits=FREE)
    )
    assert err.code == "MARKET_CLOSED"
    err = refused(order(qty="1000", limitPrice="150"), ctx(limits=FREE))
    assert err.code == "PRICE_OUT_OF_BAND"
    err = refused(order(qty="1000", limitPrice="150"), ctx(limits=FREE, confirm=True))
    assert err.code == "MAX_ORDER_VALUE"
