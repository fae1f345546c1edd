"""Time in force and sessions: held until the open, DAY expiry at the close, GTC across
days and its age limit, extended hours, the opening and closing auctions."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from brokers.paper.config import PaperConfig
from server.trading.calendar import CONTINUOUS
from server.trading.events import Reason
from server.trading.states import OrderStatus
from streams.events import Quote
from tests.brokers.paper.harness import Desk
from tests.brokers.paper.helpers import DAY, ny

D = Decimal
S = OrderStatus
THURSDAY = date(2024, 3, 14)


def test_a_day_order_placed_before_the_open_waits_and_expires_at_the_close() -> None:
    d = Desk(start_ms=ny(7, 0))
    (o,) = d.place(side="buy", type="limit", qty="10", limitPrice="90", at=ny(7, 0))
    assert d.kinds(o) == ["accepted"]
    d.quote("99", "101", at=ny(8, 0))  # pre-market: a regular order does not work yet
    d.quote("89", "89.50", at=ny(8, 1))
    assert d.kinds(o) == ["accepted"]
    d.quote("99", "101", at=ny(9, 30, 1))
    assert d.kinds(o) == ["accepted", "new"]
    expired = d.quote("99", "101", at=ny(16, 0))  # the first event at the close
    assert [str(e.kind) for e in expired] == ["expired"] and expired[0].time_ms == ny(16, 0)
    assert d.last(o).reason is Reason.DAY_ENDED and d.status(o) is S.EXPIRED


def test_the_clock_alone_expires_orders_in_a_quiet_market() -> None:
    d = Desk()
    (o,) = d.place(side="buy", type="limit", qty="10", limitPrice="90")
    events = d.advance(ny(16, 0))
    assert [(e.order_id, str(e.kind)) for e in events] == [(o, "new"), (o, "expired")]


def test_a_day_order_placed_after_the_close_works_the_next_session() -> None:
    d = Desk(start_ms=ny(17, 0))
    (o,) = d.place(side="buy", type="limit", qty="10", limitPrice="90")
    assert d.kinds(o) == ["accepted"]
    d.advance(ny(16, 0, day=DAY) + 3_600_000 * 3)  # 19:00, still Wednesday
    assert d.kinds(o) == ["accepted"]
    d.advance(ny(9, 30, day=THURSDAY))
    assert d.kinds(o) == ["accepted", "new"]
    d.advance(ny(16, 0, day=THURSDAY))
    assert d.status(o) is S.EXPIRED


def test_gtc_orders_sleep_outside_the_session_and_expire_after_their_age() -> None:
    d = Desk(PaperConfig(gtc_max_age_days=2))
    d.advance(ny(9, 30))
    d.quote("100", "100.05")
    (o,) = d.place(side="buy", type="limit", qty="10", limitPrice="99", timeInForce="gtc")
    d.advance(ny(17, 0))
    assert d.status(o) is S.NEW  # still working, across the night
    d.quote("98", "98.50", at=ny(18, 0))  # after hours: a regular order does not fill
    assert not d.fills(o)
    d.quote("98", "98.50", at=ny(9, 30, 1, day=THURSDAY))
    assert d.fills(o) == [(D(10), D("99"))]
    (old,) = d.place(side="buy", type="limit", qty="10", limitPrice="50", timeInForce="gtc")
    d.advance(ny(16, 0, day=date(2024, 3, 15)))  # 2 days on: Friday's close
    assert d.status(old) is S.NEW
    d.advance(ny(16, 0, day=date(2024, 3, 18)))  # the first close at least 2 days later
    assert d.status(old) is S.EXPIRED and d.last(old).reason is Reason.GTC_MAX_AGE


def test_extended_hours_orders_work_pre_and_post_market_and_expire_at_eight() -> None:
    d = Desk(start_ms=ny(5, 0))
    (o,) = d.place(side="buy", type="limit", qty="10", limitPrice="99", extendedHours=True)
    assert d.kinds(o) == ["new"]  # 05:00 is in the pre-market
    d.quote("98.50", "98.90", asz=4, at=ny(5, 1))
    assert d.fills(o) == [(D(4), D("99"))]  # resting: the ask came through its limit
    d.quote("99.50", "99.90", at=ny(16, 30))
    d.trade("98.00", size=2, at=ny(17, 0))  # post-market print through the limit
    assert d.fills(o)[-1] == (D(2), D("99"))
    d.advance(ny(20, 0))
    assert d.status(o) is S.EXPIRED


def test_opening_auction_fills_in_full_at_the_first_trade() -> None:
    d = Desk(start_ms=ny(8, 0))
    (buy,) = d.place(side="buy", type="market", qty="1000", timeInForce="opg")
    (lim,) = d.place(side="sell", type="limit", qty="10", limitPrice="101", timeInForce="opg")
    (ok,) = d.place(side="sell", type="limit", qty="10", limitPrice="99", timeInForce="opg")
    assert d.kinds(buy) == ["accepted"]
    d.trade("99.00", size=5, at=ny(9, 0))  # pre-market prints are not the open
    d.quote("99.90", "100.10", at=ny(9, 30))
    assert d.kinds(buy) == ["accepted"]
    d.trade("100.00", size=1, at=ny(9, 30, 1))
    assert d.fills(buy) == [(D(1000), D("100.00"))]  # no size limit in the auction
    assert d.fills(ok) == [(D(10), D("100.00"))]
    assert d.status(lim) is S.EXPIRED and d.last(lim).reason is Reason.AUCTION_MISSED


def test_closing_auction_fills_at_the_last_trade_of_the_session() -> None:
    d = Desk()
    (o,) = d.place(side="sell", type="market", qty="500", timeInForce="cls")
    (lim,) = d.place(side="buy", type="limit", qty="5", limitPrice="99", timeInForce="cls")
    d.trade("100.00", at=ny(10, 0))
    d.trade("101.25", at=ny(15, 59, 59))
    d.trade("90.00", at=ny(16, 30))  # after the close: not the closing price
    assert d.fills(o) == [(D(500), D("101.25"))]
    assert d.last(o).time_ms == ny(16, 0)
    assert d.status(lim) is S.EXPIRED


def test_a_closing_auction_without_trades_expires() -> None:
    d = Desk()
    (o,) = d.place(side="sell", type="market", qty="5", timeInForce="cls")
    d.advance(ny(16, 0))
    assert d.status(o) is S.EXPIRED and d.last(o).reason is Reason.AUCTION_MISSED


def test_auction_cutoffs_reject() -> None:
    d = Desk(start_ms=ny(9, 29))
    (o,) = d.place(side="buy", type="market", qty="5", timeInForce="opg")
    assert d.kinds(o) == ["rejected"] and d.last(o).reason is Reason.MARKET_CLOSED
    (c,) = d.place(side="buy", type="market", qty="5", timeInForce="cls", at=ny(15, 55))
    assert d.kinds(c) == ["rejected"]


def test_holidays_and_weekends_are_skipped() -> None:
    d = Desk(start_ms=ny(17, 0, day=date(2024, 3, 28)))  # Thursday before Good Friday
    (o,) = d.place(side="buy", type="limit", qty="1", limitPrice="1")
    d.advance(ny(12, 0, day=date(2024, 3, 29)))
    assert d.kinds(o) == ["accepted"]
    d.advance(ny(9, 30, day=date(2024, 4, 1)))
    assert d.kinds(o) == ["accepted", "new"]


def test_a_continuous_market_trades_at_night_and_expires_day_orders_at_midnight() -> None:
    d = Desk(PaperConfig(calendar=CONTINUOUS), start_ms=ny(3, 0, day=date(2024, 3, 16)))  # Sat
    (o,) = d.place(side="buy", type="limit", qty="1", limitPrice="10")
    d.quote("9", "9.50")
    assert d.fills(o) == [(D(1), D("10"))]
    (day,) = d.place(side="buy", type="limit", qty="1", limitPrice="5")
    d.advance(ny(0, 0, day=date(2024, 3, 17)))
    assert d.status(day) is S.EXPIRED


def test_a_jump_of_the_clock_plays_each_boundary_at_its_own_time() -> None:
    d = Desk(start_ms=ny(17, 0))
    (later,) = d.place(side="buy", type="limit", qty="1", limitPrice="1")
    (gtc,) = d.place(side="buy", type="limit", qty="1", limitPrice="1", timeInForce="gtc")
    events = d.advance(ny(12, 0, day=date(2024, 3, 18)))  # the next Monday
    assert [(e.order_id, str(e.kind), e.time_ms) for e in events] == [
        (later, "new", ny(9, 30, day=THURSDAY)),
        (gtc, "new", ny(9, 30, day=THURSDAY)),
        (later, "expired", ny(16, 0, day=THURSDAY)),
    ]
    assert d.status(gtc) is S.NEW


def test_an_event_older_than_the_clock_is_handled_at_the_clock() -> None:
    d = Desk.opened()
    (o,) = d.place(side="buy", type="market", qty="1")
    d.advance(ny(11, 0))
    quote = Quote(sym="AMZN", bp=99.0, ap=99.1, t=ny(10, 0), bs=10, ask_size=10)
    (fill,) = d._record(d.engine.on_quote(quote))
    assert fill.order_id == o and fill.time_ms == ny(11, 0)


def test_symbols_do_not_interfere() -> None:
    d = Desk.opened()
    (a,) = d.place(side="buy", type="limit", qty="10", limitPrice="50", symbol="AAA")
    (b,) = d.place(side="buy", type="limit", qty="10", limitPrice="50", symbol="BBB")
    assert d.engine.symbols() == ["AAA", "BBB"]
    d.quote("49", "49.50", symbol="AAA")
    assert d.filled(a) == 10 and d.filled(b) == 0
    assert d.engine.symbols() == ["BBB"]
