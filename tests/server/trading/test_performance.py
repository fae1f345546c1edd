"""Performance measures: time-weighted return, drawdown, round trips, win rate, and the
equity curve from fills and marks."""

from __future__ import annotations

from decimal import Decimal

from server.trading.model import Side
from server.trading.performance import (
    CashFlow,
    EquityPoint,
    MarkSample,
    equity_curve,
    max_drawdown,
    performance,
    round_trips,
    time_weighted_return,
    win_rate,
)
from server.trading.positions import PositionSide
from tests.server.trading.helpers import fill

D = Decimal


def curve(*values: str) -> list[EquityPoint]:
    return [EquityPoint(i, D(v)) for i, v in enumerate(values)]


def test_time_weighted_return_ignores_deposits() -> None:
    # +10%, then a $1,000 deposit, then +10% again: 21%, whatever the deposit.
    points = curve("1000", "1100", "2310")
    assert time_weighted_return(points, [CashFlow(2, D("1000"))]) == D("0.21")
    assert time_weighted_return(points) == D("1.31")
    # A flow before the first valuation is already in it.
    assert time_weighted_return(points, [CashFlow(0, D("500")), CashFlow(2, D("1000"))]) == D(
        "0.21"
    )
    assert time_weighted_return(curve("1000")) is None
    assert time_weighted_return(curve("0", "10")) is None
    assert time_weighted_return(curve("1000", "900", "990")) == D("-0.01")


def test_max_drawdown_with_recovery() -> None:
    dd = max_drawdown(curve("100", "120", "90", "110", "60", "130", "125"))
    assert dd is not None
    assert (dd.fraction, dd.peak_ms, dd.trough_ms, dd.recovered_ms) == (D("0.5"), 1, 4, 5)
    none = max_drawdown(curve("100", "101", "102"))
    assert none is not None and none.fraction == 0 and none.peak_ms is None
    never = max_drawdown(curve("100", "80"))
    assert never is not None and never.fraction == D("0.2") and never.recovered_ms is None
    # A withdrawal is not a drawdown.
    flows = max_drawdown(curve("100", "50"), [CashFlow(1, D("-50"))])
    assert flows is not None and flows.fraction == 0
    assert max_drawdown([]) is None


def test_round_trips_scale_in_out_and_flip() -> None:
    fills = [
        fill("a", 1, "10", "100", t=1, commission="1.00"),
        fill("a", 2, "10", "110", t=2, commission="1.00"),  # avg 105
        fill("b", 1, "5", "120", side=Side.SELL, t=3, commission="0.50"),  # +75
        # Sells 15 to close and 10 to open a short; $2.50 commission split 1.50/1.00.
        fill("c", 1, "25", "100", side=Side.SELL, t=4, commission="2.50"),  # -75
        fill("d", 1, "10", "90", t=5),  # short +100
        fill("e", 1, "1", "50", symbol="MSFT", t=6),  # still open
    ]
    trips = round_trips(fills)
    assert [(t.side, t.opened_ms, t.closed_ms, t.qty) for t in trips] == [
        (PositionSide.LONG, 1, 4, D(20)),
        (PositionSide.SHORT, 4, 5, D(10)),
    ]
    long, short = trips
    assert (long.entry_price, long.exit_price, long.realized_pnl) == (
        D("105.00"),
        D("105.00"),
        D("0.00"),
    )
    assert long.commissions == D("4.00") and long.net_pnl == D("-4.00")
    assert (short.entry_price, short.exit_price, short.realized_pnl) == (
        D("100.00"),
        D("90.00"),
        D("100.00"),
    )
    assert short.commissions == D("1.00") and short.net_pnl == D("99.00")
    assert win_rate(trips) == D("0.5") and win_rate([]) is None


def test_performance_summary() -> None:
    fills = [fill("a", 1, "10", "100"), fill("a", 2, "10", "101", side=Side.SELL, t=1)]
    perf = performance(curve("1000", "1010"), fills)
    assert perf.time_weighted_return == D("0.01") and perf.realized_pnl == D("10.00")
    assert (perf.trades, perf.wins, perf.losses, perf.win_rate) == (1, 1, 0, D("1"))


def test_equity_curve_from_fills_and_marks() -> None:
    fills = [fill("a", 1, "10", "100", t=10), fill("a", 2, "10", "104", side=Side.SELL, t=30)]
    marks = [
        MarkSample(5, "AMZN", D("99")),
        MarkSample(10, "AMZN", D("101")),  # same time as the fill: the fill first
        MarkSample(20, "AMZN", D("103")),
        MarkSample(40, "AMZN", D("90")),
    ]
    points = equity_curve(D("1000"), fills, marks)
    assert points == [
        EquityPoint(5, D("1000")),
        EquityPoint(10, D("1010")),
        EquityPoint(20, D("1030")),
        EquityPoint(40, D("1040")),
    ]
