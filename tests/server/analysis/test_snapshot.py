"""Snapshots: built deterministically from their inputs, canonical, fingerprinted."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from server.analysis.indicator_set import compute
from server.analysis.snapshot import (
    AccountView,
    NewsItem,
    OrderView,
    Preferences,
    RiskTolerance,
    Style,
    SymbolSnapshot,
    decode,
    encode,
    fingerprint,
    last_price,
    schema,
)
from server.analysis.snapshot_build import (
    SymbolInputs,
    alert_view,
    exposure,
    portfolio_snapshot,
    position_risk,
    symbol_snapshot,
    timeframes_for,
)
from server.indicators import IndicatorSpec
from server.market.timeframes import Timeframe
from tests.server.analysis.helpers import (
    NOW_MS,
    live_state,
    long_position,
    make_snapshot,
    stop_order,
    walk_bars,
)


def test_the_same_inputs_give_the_same_bytes_and_fingerprint() -> None:
    a, b = make_snapshot(seed=3), make_snapshot(seed=3)
    assert encode(a) == encode(b)
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(make_snapshot(seed=4)) != fingerprint(a)


def test_a_new_trade_changes_the_fingerprint() -> None:
    assert fingerprint(make_snapshot(price=100.0)) != fingerprint(make_snapshot(price=100.01))


def test_round_trip_through_json() -> None:
    pos = long_position("NVDA", "10", "95.50", 100.0)
    snapshot = make_snapshot(
        position=pos,
        orders=[stop_order("o1", "sell", "10", "92.10")],
        news=[NewsItem("NVDA beats", "https://wire.example/1", "2024-06-05T12:00:00Z", "Wire")],
        equity=Decimal("50000"),
    )
    again = decode(encode(snapshot))
    assert again == snapshot
    assert fingerprint(again) == fingerprint(snapshot)
    # Money stays exact: decimal strings, never floats.
    raw = msgspec.json.decode(encode(snapshot))
    assert raw["position"]["avgEntryPrice"] == "95.50"
    assert raw["kind"] == "symbol"


def test_indicators_equal_the_live_incremental_ones() -> None:
    bars = walk_bars("X", Timeframe.H1, 250)
    got = compute(bars, intraday=True)
    rsi = IndicatorSpec.parse("RSI(14)").create()
    for bar in bars:
        rsi.add(bar)
    assert rsi.value is not None
    assert got.rsi14 == round(rsi.value[0], 2)
    assert got.sma200 is not None and got.vwap is not None
    assert compute(bars, intraday=False).vwap is None  # no session VWAP on daily bars
    few = compute(bars[:10], intraday=True)
    assert few.sma50 is None and few.rsi14 is None and few.ema20 is None


def test_session_change_from_the_previous_daily_close() -> None:
    snapshot = make_snapshot(price=100.0)
    session = snapshot.session
    assert session is not None
    daily = next(s for s in snapshot.series if s.timeframe == "1d")
    assert session.prev_close == daily.bars[-1].close
    assert session.change == round(100.0 - session.prev_close, 4)
    assert session.change_pct == round((100.0 - session.prev_close) / session.prev_close * 100, 2)
    assert session.high == 101.0 and session.low == 99.0


def test_staleness_and_missing_data_are_noted() -> None:
    state = live_state("ABC", 50.0, t_ms=NOW_MS - 3_600_000)
    snapshot = symbol_snapshot(
        SymbolInputs("ABC", state, {Timeframe.H1: [], Timeframe.D1: []}, taken_at_ms=NOW_MS)
    )
    assert not snapshot.live
    assert any("stale" in n for n in snapshot.notes)
    assert any("no closed 1h bars" in n for n in snapshot.notes)
    empty = symbol_snapshot(SymbolInputs("ABC", None, {Timeframe.H1: []}, taken_at_ms=NOW_MS))
    assert empty.trade is None and last_price(empty) is None
    assert "no trade received yet for this symbol" in empty.notes


def test_last_price_falls_back_to_the_quote_then_the_bars() -> None:
    snapshot = make_snapshot(price=100.0)
    assert last_price(snapshot) == 100.0
    no_trade = msgspec.structs.replace(snapshot, trade=None)
    assert last_price(no_trade) == 100.0  # the quote's midpoint
    nothing_live = msgspec.structs.replace(no_trade, quote=None)
    assert last_price(nothing_live) == snapshot.series[0].bars[-1].close


@pytest.mark.parametrize(
    ("style", "expected"),
    [
        (Style.DAY, (Timeframe.M5, Timeframe.D1)),
        (Style.SWING, (Timeframe.H1, Timeframe.D1)),
        (Style.POSITION, (Timeframe.D1, Timeframe.H1)),
        (None, (Timeframe.H1, Timeframe.D1)),
    ],
)
def test_the_style_picks_the_timeframes(
    style: Style | None, expected: tuple[Timeframe, Timeframe]
) -> None:
    assert timeframes_for(style) == expected
    snapshot = make_snapshot(preferences=Preferences(style, RiskTolerance.LOW))
    assert tuple(s.timeframe for s in snapshot.series) == tuple(t.value for t in expected)


def test_position_risk_finds_the_protective_stop() -> None:
    pos = long_position("NVDA", "10", "95.50", 100.0)
    orders = [
        stop_order("a", "sell", "10", "92.10"),
        stop_order("b", "sell", "10", "93.00"),  # nearer: this one protects first
        stop_order("c", "buy", "5", "105.00"),  # opening side: not protective
        OrderView("d", "sell", "limit", Decimal(10), "accepted", limit_price=Decimal("110")),
    ]
    risk = position_risk(pos, orders, Decimal("50000"))
    assert risk.protective_stop == Decimal("93.00")
    assert risk.loss_at_stop == Decimal("-25.00")
    assert risk.unrealized_pnl_pct == Decimal("4.71")
    assert risk.weight_pct == Decimal("2.00")
    assert position_risk(pos, [], None).protective_stop is None


def test_exposure_and_portfolio() -> None:
    from server.analysis.snapshot import PositionView

    long_ = long_position("AAA", "10", "100", 110.0)
    short = PositionView("BBB", "short", Decimal(5), Decimal(50), Decimal("-250.00"), Decimal("0"))
    e = exposure([long_, short], Decimal(10_000))
    assert (e.long_value, e.short_value, e.gross, e.net) == (
        Decimal("1100.00"),
        Decimal("250.00"),
        Decimal("1350.00"),
        Decimal("850.00"),
    )
    assert (e.gross_pct, e.net_pct) == (Decimal("13.50"), Decimal("8.50"))
    h1 = make_snapshot("BBB", position=short)
    h2 = make_snapshot("AAA", position=long_)
    review = portfolio_snapshot(AccountView(Decimal(10_000), Decimal(9_000)), [h1, h2])
    assert [h.symbol for h in review.holdings] == ["AAA", "BBB"]
    assert decode(encode(review)) == review
    assert "no account figures" in portfolio_snapshot(None, []).notes[0]


def test_alert_view_summarises_the_definition() -> None:
    view = alert_view(
        "a1",
        {
            "symbol": "NVDA",
            "conditions": [
                {"left": "LAST", "op": "crossingUp", "value": 230.5},
                {
                    "left": {"indicator": "RSI(14)", "timeframe": "5m"},
                    "op": "lessThan",
                    "value": 70,
                },
                {
                    "left": "MID",
                    "op": "enteringChannel",
                    "channel": {
                        "lower": {
                            "indicator": "BBANDS(20,2)",
                            "timeframe": "1m",
                            "output": "lower",
                        },
                        "upper": 231.0,
                    },
                },
                {
                    "left": "LAST",
                    "op": "movingUp",
                    "move": {"by": 2.5, "percent": True, "bars": 10, "timeframe": "1m"},
                },
            ],
            "trigger": {"mode": "everyTime", "cooldownMs": 60000},
        },
    )
    assert view.summary == (
        "LAST crossingUp 230.5 AND RSI(14) 5m lessThan 70 AND MID enteringChannel "
        "[BBANDS(20,2) 1m.lower, 231] AND LAST movingUp by 2.5% within 10 1m bars (everyTime)"
    )
    assert view.levels == (230.5, 231.0)


def test_the_schema_describes_both_kinds() -> None:
    text = msgspec.json.encode(schema()).decode()
    assert "SymbolSnapshot" in text and "PortfolioSnapshot" in text
    assert isinstance(make_snapshot(), SymbolSnapshot)


def test_feeding_only_the_needed_bars_changes_no_value() -> None:
    from server.analysis.indicator_set import _SET, _VWAP, _rounded

    for timeframe in (Timeframe.M5, Timeframe.H1, Timeframe.D1):
        bars = walk_bars("X", timeframe, 250, seed=5)
        got = compute(bars, intraday=timeframe is not Timeframe.D1)
        specs = [*_SET, (("vwap",), _VWAP)] if timeframe is not Timeframe.D1 else list(_SET)
        for names, spec in specs:
            full = spec.create(max_rollback=0)
            for bar in bars:
                full.add(bar)
            assert full.value is not None
            for i, name in enumerate(names):
                if not name.startswith("_"):
                    assert getattr(got, name) == _rounded(name, full.value[i]), (timeframe, name)


def test_live_is_judged_by_receipt_so_a_replay_is_live_while_it_plays() -> None:
    from server.market.state import MarketState
    from streams.events import Received, Trade

    market = MarketState()
    replayed_ms = 1_340_285_400_000  # 2012-06-21, as a recorded day is served
    market.apply(
        Received(Trade("AMZN", 220.0, 100, replayed_ms, q=1), (NOW_MS - 2_000) * 1_000_000)
    )
    inputs = SymbolInputs("AMZN", market.get("AMZN"), {}, taken_at_ms=NOW_MS, stale_after_ms=10_000)
    assert symbol_snapshot(inputs).live
    later = SymbolInputs(
        "AMZN", market.get("AMZN"), {}, taken_at_ms=NOW_MS + 60_000, stale_after_ms=10_000
    )
    assert not symbol_snapshot(later).live
