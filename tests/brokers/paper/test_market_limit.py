"""Market and limit orders against quotes and trades: prices, displayed size, partial
fills, shared liquidity, resting at the limit."""

from __future__ import annotations

from decimal import Decimal

from brokers.paper.config import Commission, PaperConfig
from server.trading.events import Reason
from server.trading.states import OrderStatus
from tests.brokers.paper.harness import Desk
from tests.brokers.paper.helpers import ny

D = Decimal
S = OrderStatus


def open_desk(config: PaperConfig | None = None) -> Desk:
    return Desk.opened(config=config)


def test_market_buy_takes_the_ask_up_to_its_size_then_the_next_quotes() -> None:
    d = open_desk()
    d.quote("100.00", "100.05", asz=30)
    (o,) = d.place(side="buy", type="market", qty="100")
    assert d.kinds(o) == ["new", "partial_fill"]
    assert d.fills(o) == [(D(30), D("100.05"))]
    d.quote("100.01", "100.06", asz=50)
    d.quote("100.02", "100.08", asz=500)
    assert d.fills(o) == [(D(30), D("100.05")), (D(50), D("100.06")), (D(20), D("100.08"))]
    assert d.status(o) is S.FILLED and d.last(o).filled_qty == 100
    assert d.states[o].avg_fill_price == D("100.0610")


def test_market_sell_hits_the_bid() -> None:
    d = open_desk()
    d.quote("99.98", "100.02", bs=200)
    (o,) = d.place(side="sell", type="market", qty="150")
    assert d.fills(o) == [(D(150), D("99.98"))]
    assert d.account.position("AMZN").qty == -150


def test_displayed_size_is_shared_until_the_next_quote() -> None:
    d = open_desk()
    d.quote("100.00", "100.05", asz=100)
    (a,) = d.place(side="buy", type="market", qty="70")
    (b,) = d.place(side="buy", type="market", qty="70")
    assert d.fills(a) == [(D(70), D("100.05"))]
    assert d.fills(b) == [(D(30), D("100.05"))]  # only what a left
    d.quote("100.00", "100.05", asz=100)  # a new quote: fresh size
    assert d.fills(b)[-1] == (D(40), D("100.05"))


def test_market_orders_wait_for_a_quote_of_the_session_or_fill_at_prints() -> None:
    d = Desk()
    d.quote("99", "101", at=ny(9, 0))  # pre-market quote: stale for a regular order
    (o,) = d.place(side="buy", type="market", qty="100", at=ny(9, 10))
    assert d.kinds(o) == ["accepted"]
    d.advance(ny(9, 30))
    assert d.kinds(o) == ["accepted", "new"] and not d.fills(o)
    # No quote of this session yet: the first print fills it, up to its size.
    d.trade("100.50", size=40)
    assert d.fills(o) == [(D(40), D("100.50"))]
    d.quote("100.40", "100.60", asz=1000)
    assert d.fills(o)[-1] == (D(60), D("100.60")) and d.status(o) is S.FILLED


def test_marketable_limit_takes_the_quote_at_its_price_then_rests_at_the_limit() -> None:
    d = open_desk()
    d.quote("100.00", "100.05", asz=40)
    (o,) = d.place(side="buy", type="limit", qty="100", limitPrice="100.10")
    assert d.fills(o) == [(D(40), D("100.05"))]  # price improvement: the ask, not the limit
    # The ask rises above the limit: nothing more fills.
    d.quote("100.05", "100.20", asz=500)
    assert len(d.fills(o)) == 1
    # A trade at the limit does not fill it (no queue position), one below does.
    d.trade("100.10", size=500)
    assert len(d.fills(o)) == 1
    d.trade("100.09", size=25)
    assert d.fills(o)[-1] == (D(25), D("100.10"))  # resting: fills at its limit
    # The ask comes down through the limit: fills at the limit, up to the size shown.
    d.quote("100.00", "100.08", asz=10)
    assert d.fills(o)[-1] == (D(10), D("100.10"))
    d.quote("100.00", "100.10", asz=1000)  # at the limit
    assert d.fills(o)[-1] == (D(25), D("100.10")) and d.status(o) is S.FILLED


def test_sell_limit_rests_and_fills_when_the_bid_reaches_it() -> None:
    d = open_desk()
    d.quote("100.00", "100.05")
    (o,) = d.place(side="sell", type="limit", qty="50", limitPrice="100.50")
    assert d.kinds(o) == ["new"]
    d.trade("100.50")  # at the limit: not enough
    d.quote("100.49", "100.60")
    assert not d.fills(o)
    d.trade("100.51", size=20)  # through it
    d.quote("100.55", "100.60", bs=100)  # the bid through it
    assert d.fills(o) == [(D(20), D("100.50")), (D(30), D("100.50"))]


def test_price_then_time_priority_among_our_resting_orders() -> None:
    d = open_desk()
    d.quote("99.00", "101.00")
    (low,) = d.place(side="buy", type="limit", qty="50", limitPrice="100.00")
    (first,) = d.place(side="buy", type="limit", qty="50", limitPrice="100.50")
    (second,) = d.place(side="buy", type="limit", qty="50", limitPrice="100.50")
    d.quote("99.00", "100.40", asz=70)
    assert d.fills(first) == [(D(50), D("100.50"))]
    assert d.fills(second) == [(D(20), D("100.50"))]
    assert not d.fills(low)


def test_fractional_and_notional_market_orders() -> None:
    d = open_desk()
    d.quote("100.00", "100.05", asz=1)
    (frac,) = d.place(side="buy", type="market", qty="2.5")
    assert d.fills(frac) == [(D(1), D("100.05"))]
    d.quote("100.00", "100.05", asz=5)
    assert d.fills(frac)[-1] == (D("1.5"), D("100.05"))
    # $250 at the ask, 100.05, where 3.5 shares are left after the fractional order.
    (notional,) = d.place(side="buy", type="market", notional="250.00")
    assert d.fills(notional) == [(D("2.498750624"), D("100.05"))]  # to the billionth, rounded down
    assert d.status(notional) is S.FILLED and d.states[notional].qty == D("2.498750624")
    assert d.account.cash == D(1_000_000) - D("100.05") - D("150.08") - D("250.00")
    # A notional order bigger than the size shown fills in parts, dollars counted down.
    (big,) = d.place(side="buy", type="market", notional="1000.00")
    assert d.fills(big) == [(D("1.001249376"), D("100.05"))]  # the last of the 3.5 shares
    d.quote("100.00", "100.10", asz=100)
    _qty, price = d.fills(big)[-1]
    assert price == D("100.10") and d.status(big) is S.FILLED
    spent = sum(q * p for q, p in d.fills(big))
    assert D("999.99") < spent <= D("1000.00")


def test_slippage_and_commission() -> None:
    config = PaperConfig(
        commission=Commission(per_share=D("0.005"), per_order=D("1"), sell_rate=D("0.0000278")),
        slippage_bps=10,
    )
    d = open_desk(config)
    d.quote("100.00", "100.05", asz=60, bs=1000)
    (buy,) = d.place(side="buy", type="market", qty="100")
    # 10 bps worse than 100.05 is 100.150..., rounded up to the cent.
    assert d.fills(buy)[0] == (D(60), D("100.16"))
    d.quote("100.00", "100.05", asz=100)
    fills = [e.fill for e in d.events if e.fill]
    assert [f.commission for f in fills] == [D("1.30"), D("0.20")]  # $1 per order, once
    (_sell,) = d.place(side="sell", type="market", qty="100")
    sold = [e.fill for e in d.events if e.fill][-1]
    assert sold.price == D("99.90")  # 100.00 less 10 bps
    assert sold.commission == D("1.78")  # 1 + 0.50 + 0.0000278 * 9,990
    # Limit orders never pass their limit, slippage or not.
    (lim,) = d.place(side="buy", type="limit", qty="10", limitPrice="100.05")
    assert d.fills(lim) == [(D(10), D("100.05"))]


def test_ioc_fills_what_it_can_and_cancels_the_rest() -> None:
    d = open_desk()
    d.quote("100.00", "100.05", asz=30)
    (o,) = d.place(side="buy", type="limit", qty="100", limitPrice="100.05", timeInForce="ioc")
    assert d.kinds(o) == ["new", "partial_fill", "canceled"]
    assert d.last(o).reason is Reason.IOC_REMAINDER and d.filled(o) == 30
    (none,) = d.place(side="buy", type="limit", qty="10", limitPrice="99", timeInForce="ioc")
    assert d.kinds(none) == ["new", "canceled"] and d.status(none) is S.CANCELED


def test_fok_fills_all_at_once_or_nothing() -> None:
    d = open_desk()
    d.quote("100.00", "100.05", asz=100)
    (no,) = d.place(side="buy", type="market", qty="101", timeInForce="fok")
    assert d.kinds(no) == ["new", "canceled"] and d.last(no).reason is Reason.FOK_NOT_FILLABLE
    (yes,) = d.place(side="buy", type="market", qty="100", timeInForce="fok")
    assert d.fills(yes) == [(D(100), D("100.05"))] and d.status(yes) is S.FILLED
    (limit,) = d.place(side="buy", type="limit", qty="10", limitPrice="100.04", timeInForce="fok")
    assert d.kinds(limit) == ["new", "canceled"]


def test_ioc_and_fok_are_rejected_when_the_market_is_closed() -> None:
    d = Desk()
    (o,) = d.place(side="buy", type="market", qty="1", timeInForce="ioc", at=ny(8, 0))
    assert d.kinds(o) == ["rejected"] and d.last(o).reason is Reason.MARKET_CLOSED


def test_quotes_without_size_or_price_give_nothing() -> None:
    d = open_desk()
    d.quote("100.00", "100.05", asz=0)
    (o,) = d.place(side="buy", type="market", qty="10")
    assert not d.fills(o)
    d.quote("100.00", "0", asz=100)  # no ask at all
    assert not d.fills(o)
    d.quote("100.00", "100.05", asz=100)
    assert d.fills(o) == [(D(10), D("100.05"))]
