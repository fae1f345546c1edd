"""Market state: last trade/quote, New York days, reordering, staleness."""

from __future__ import annotations

from datetime import date

from server.market.state import MarketState
from server.market.trading_day import day_window
from streams.events import Quote, Received, Trade

# 2012-06-21 09:30:00 America/New_York (EDT, UTC-4)
OPEN_MS = 1340285400000


def trade(p: float, s: int, t: int, q: int, sym: str = "AMZN") -> Received:
    return Received(Trade(sym=sym, p=p, s=s, t=t, q=q), received_ns=t * 1_000_000 + 5)


def quote(bp: float, ap: float, t: int, q: int, sym: str = "AMZN") -> Received:
    return Received(Quote(sym=sym, bp=bp, ap=ap, t=t, q=q, bs=100, ask_size=200), t * 1_000_000)


def test_last_trade_is_the_last_print_that_may_set_it() -> None:
    m = MarketState()
    assert m.apply(trade(10.0, 100, OPEN_MS, q=1))
    # An odd lot (37) and an average-price print (2) are on the tape but never "last".
    odd = Received(Trade(sym="AMZN", p=11.0, s=5, t=OPEN_MS + 1, q=2, c=(37,)), 0, flags=4)
    assert m.apply(odd)
    st = m.state("AMZN")
    assert st.last_trade is not None and st.last_trade.event.p == 10.0
    assert [r.event.p for r in st.trades(5)] == [11.0, 10.0]


def test_dst_days_have_their_real_length() -> None:
    # 2012-03-11 (spring forward) has 23 hours, 2012-11-04 (fall back) 25.
    spring = day_window(1331470800000 + 12 * 3_600_000)
    fall = day_window(1352001600000 + 12 * 3_600_000)
    assert spring.day == date(2012, 3, 11) and spring.end_ms - spring.start_ms == 23 * 3_600_000
    assert fall.day == date(2012, 11, 4) and fall.end_ms - fall.start_ms == 25 * 3_600_000


def test_reordered_events_are_dropped_per_channel() -> None:
    m = MarketState()
    assert m.apply(trade(10.0, 1, OPEN_MS, q=10))
    assert not m.apply(trade(11.0, 1, OPEN_MS + 1, q=10))  # not greater
    assert not m.apply(trade(11.0, 1, OPEN_MS + 1, q=3))
    assert m.apply(quote(9.9, 10.1, OPEN_MS, q=5))  # quotes have their own sequence
    assert m.apply(trade(10.5, 1, OPEN_MS + 2, q=12))  # gaps are fine
    assert m.reordered == 2
    st = m.state("AMZN")
    assert st.last_trade is not None and st.last_trade.event.p == 10.5


def test_sequences_restart_with_a_new_upstream_session() -> None:
    m = MarketState()
    m.apply(trade(10.0, 1, OPEN_MS, q=500))
    m.reset_sequences()
    assert m.apply(trade(10.0, 1, OPEN_MS, q=1))


def test_recent_trades_newest_first_and_bounded() -> None:
    m = MarketState(trades_kept=3)
    for i in range(5):
        m.apply(trade(10.0 + i, 1, OPEN_MS + i, q=i + 1))
    st = m.state("AMZN")
    assert [r.event.p for r in st.trades(10)] == [14.0, 13.0, 12.0]
    assert [r.event.p for r in st.trades(2)] == [14.0, 13.0]


def test_staleness() -> None:
    m = MarketState()
    st = m.state("AMZN")
    assert st.is_stale(now_ns=10**18, stale_after_ns=10**9)
    m.apply(quote(1.0, 2.0, OPEN_MS, q=1))
    received = OPEN_MS * 1_000_000
    assert not st.is_stale(received + 10**9, 10**9)
    assert st.is_stale(received + 10**9 + 1, 10**9)
