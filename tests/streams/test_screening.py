"""The screen: an event's time against the feed clock and the receive time, its price
against the symbol's reference; one bad event never moves what others are judged by."""

from __future__ import annotations

from streams.events import Quote, Received, Trade
from streams.polygon_protocol import RejectReason
from streams.screening import HELD, FeedClock, FeedScreen, ScreenPolicy

T0 = 1_340_285_400_000  # 2012-06-21 09:30 New York
NOW = 1_700_000_000_000  # "today": later than any replayed time
YEAR_2100 = 4_102_444_800_000


class Feed:
    """Drives a screen the way the ingest does and keeps what it applied."""

    def __init__(self, policy: ScreenPolicy) -> None:
        self.screen = FeedScreen(policy)
        self.applied: list[Received] = []
        self.rejected: list[RejectReason] = []

    def send(self, ev: Trade | Quote, recv_ms: int = NOW) -> object:
        item = Received(ev, recv_ms * 1_000_000)
        verdict = self.screen.admit(item, recv_ms)
        self.applied.extend(self.screen.released)
        self.screen.released.clear()
        self.rejected.extend(r.reason for r in self.screen.dropped)
        self.screen.dropped.clear()
        if verdict is None:
            self.applied.append(item)
        elif verdict is not HELD:
            self.rejected.append(verdict.reason)
        return verdict

    def times(self) -> list[int]:
        return [r.event.t for r in self.applied]  # type: ignore[union-attr]


def trade(t: int, p: float = 100.0, sym: str = "AMZN") -> Trade:
    return Trade(sym=sym, p=p, s=100, t=t)


def quote(t: int, bid: float, ask: float, sym: str = "AMZN") -> Quote:
    return Quote(sym=sym, bp=bid, ap=ask, t=t, bs=100, ask_size=100)


def replay() -> Feed:
    return Feed(ScreenPolicy(live=False, ahead_ms=60_000, late_ms=3_600_000, band=0.5))


def test_the_clock_is_the_second_highest_time() -> None:
    clock = FeedClock()
    clock.note(10, 1)
    assert clock.time_ms == 0  # one event is not a clock
    clock.note(20, 2)
    assert clock.time_ms == 10
    clock.note(10_000, 3)  # one outlier: the clock does not follow
    assert clock.time_ms == 20
    clock.note(30, 4)
    assert clock.time_ms == 30 and clock.now_ms(wall_ms=14) == 40


def test_a_future_dated_trade_is_rejected_and_moves_nothing() -> None:
    feed = replay()
    for i in range(5):
        feed.send(trade(T0 + i * 10))
    clock = feed.screen.clock.time_ms
    assert feed.send(trade(YEAR_2100)) is not None
    assert feed.rejected == [RejectReason.TIMESTAMP_AHEAD]  # beyond the receive time
    assert feed.screen.clock.time_ms == clock
    feed.send(trade(T0 + 100))
    assert feed.times()[-1] == T0 + 100


def test_a_past_outlier_a_year_ahead_in_a_replay_is_held_then_rejected() -> None:
    """Not in the future (the wall check passes it) but a year ahead of the feed."""
    feed = replay()
    for i in range(5):
        feed.send(trade(T0 + i * 10))
    assert feed.send(trade(T0 + 365 * 86_400_000, sym="GOOG")) is HELD
    feed.send(trade(T0 + 60))
    feed.send(trade(T0 + 70, sym="GOOG"))
    feed.send(trade(T0 + 80))
    assert feed.rejected == [RejectReason.TIMESTAMP_UNCONFIRMED]
    assert feed.screen.clock.time_ms == T0 + 70
    assert all(t < T0 + 1000 for t in feed.times())


def test_a_real_jump_is_confirmed_by_the_next_event() -> None:
    feed = replay()
    feed.send(trade(T0))
    feed.send(trade(T0 + 1))
    later = T0 + 17 * 3_600_000  # the next session of a multi-day recording
    assert feed.send(trade(later)) is HELD
    assert feed.send(trade(later + 5)) is None
    assert feed.times() == [T0, T0 + 1, later, later + 5]  # in arrival order, none lost
    assert feed.screen.clock.time_ms == later


def test_the_first_events_of_a_replay_wait_for_agreement() -> None:
    feed = replay()
    assert feed.send(trade(T0 + 400 * 86_400_000)) is HELD  # a bad first event
    assert feed.send(trade(T0)) is HELD
    assert feed.send(trade(T0 + 3)) is None
    assert feed.times() == [T0, T0 + 3]
    for i in range(3):
        feed.send(trade(T0 + 10 + i))
    assert feed.rejected == [RejectReason.TIMESTAMP_UNCONFIRMED]


def test_stale_events_are_rejected() -> None:
    feed = replay()
    for i in range(3):
        feed.send(trade(T0 + 2 * 3_600_000 + i))
    feed.send(trade(T0))  # two hours behind the feed clock, tolerance one hour
    assert feed.rejected == [RejectReason.TIMESTAMP_STALE]


def test_live_events_are_judged_against_the_receive_time() -> None:
    feed = Feed(ScreenPolicy(live=True, live_ahead_ms=5_000, late_ms=3_600_000))
    assert feed.send(trade(NOW - 50, p=100.0), recv_ms=NOW) in (None, HELD)
    feed.send(quote(NOW - 40, 99.9, 100.1), recv_ms=NOW)
    assert feed.send(trade(NOW + 60_000), recv_ms=NOW) is not None
    assert feed.send(trade(NOW - 7_200_000), recv_ms=NOW) is not None
    assert feed.rejected == [RejectReason.TIMESTAMP_AHEAD, RejectReason.TIMESTAMP_STALE]
    # A quiet minute needs no confirmation on a live feed: the wall clock vouches.
    assert feed.send(trade(NOW + 60_000, p=100.2), recv_ms=NOW + 60_010) is None


def test_an_implausible_price_is_rejected_and_the_reference_stays() -> None:
    feed = replay()
    for i in range(3):
        feed.send(trade(T0 + i, p=100.0 + i / 100))
    assert feed.send(trade(T0 + 5, p=10_000.0)) is HELD
    feed.send(trade(T0 + 6, p=100.03))
    assert feed.rejected == [RejectReason.PRICE_OUT_OF_BAND]
    assert feed.screen.reference("AMZN") == 100.03
    assert feed.send(trade(T0 + 7, p=1.0)) is HELD
    feed.send(quote(T0 + 8, 100.0, 100.1))  # the book disagrees
    assert feed.rejected[-1] is RejectReason.PRICE_OUT_OF_BAND


def test_a_real_price_move_is_confirmed_and_nothing_is_lost() -> None:
    feed = replay()
    for i in range(3):
        feed.send(trade(T0 + i, p=100.0))
    assert feed.send(trade(T0 + 10, p=40.0)) is HELD  # -60%: beyond a 50% band
    assert feed.send(trade(T0 + 11, p=40.5)) is HELD
    assert feed.send(trade(T0 + 12, p=40.2)) is None  # three agree: the move is real
    assert [r.event.p for r in feed.applied][-3:] == [40.0, 40.5, 40.2]  # type: ignore[union-attr]
    assert feed.rejected == []


def test_the_book_confirms_a_move_at_once() -> None:
    feed = replay()
    for i in range(3):
        feed.send(trade(T0 + i, p=100.0))
    assert feed.send(trade(T0 + 10, p=40.0)) is HELD
    assert feed.send(quote(T0 + 11, 39.9, 40.1)) is None
    held_trade, the_quote = feed.applied[-2:]
    assert held_trade.event == trade(T0 + 10, p=40.0) and type(the_quote.event) is Quote
    assert feed.screen.reference("AMZN") == 40.0


def test_a_bad_first_trade_never_becomes_the_reference() -> None:
    feed = replay()
    feed.send(trade(T0, p=10_000.0, sym="X"))  # held with the clock, then on price
    feed.send(trade(T0 + 1, p=100.0, sym="X"))
    feed.send(trade(T0 + 2, p=100.1, sym="X"))
    assert [r.event.p for r in feed.applied] == [100.0, 100.1]  # type: ignore[union-attr]
    assert feed.rejected == [RejectReason.PRICE_OUT_OF_BAND]


def test_quotes_far_from_the_reference_are_rejected() -> None:
    feed = replay()
    for i in range(3):
        feed.send(trade(T0 + i, p=100.0))
    feed.send(quote(T0 + 5, 0.01, 100.05))  # a stub bid
    assert feed.rejected == [RejectReason.PRICE_OUT_OF_BAND]
    assert feed.send(quote(T0 + 6, 99.95, 0.0)) is None  # one-sided, in the band


def test_other_symbols_are_not_affected_by_a_held_event() -> None:
    feed = replay()
    for i in range(3):
        feed.send(trade(T0 + i, p=100.0))
        feed.send(trade(T0 + i, p=50.0, sym="GOOG"))
    feed.send(trade(T0 + 5, p=1_000.0))
    assert feed.send(trade(T0 + 6, p=50.1, sym="GOOG")) is None


def test_the_band_can_be_turned_off() -> None:
    feed = Feed(ScreenPolicy(live=False, band=0.0))
    feed.send(trade(T0, p=100.0))
    feed.send(trade(T0 + 1, p=100.0))
    assert feed.send(trade(T0 + 2, p=10_000.0)) is None


def test_a_new_session_restarts_the_clock() -> None:
    feed = replay()
    for i in range(3):
        feed.send(trade(T0 + 5 * 3_600_000 + i))
    feed.screen.new_session()  # a replay restarted from its beginning
    feed.send(trade(T0))
    assert feed.send(trade(T0 + 1)) is None
    assert feed.rejected == []
