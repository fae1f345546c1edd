"""Performance measures over an equity curve and closed trades, as pure functions.

- ``time_weighted_return``: the product of the sub-period returns between valuations,
  each net of the cash flows (deposits, withdrawals) of its period, so money added or
  taken out does not count as performance. A flow between two valuations is taken to
  happen just after the first: the period's return is ``E1 / (E0 + flows) - 1`` (the
  usual daily-valuation method with beginning-of-period flows).
- ``max_drawdown``: the largest fall from a peak of the same flow-adjusted wealth
  index, as a fraction, with the peak and trough times and the recovery time if any.
- ``round_trips``: closed trades from fills: a trade opens when a position leaves zero
  and closes when it returns to zero (a flip through zero closes one and opens the
  next at the same fill, its commission split by quantity). Partial closes add to the
  trade's realised P&L.
- ``win_rate``: trades whose net P&L (after commissions) is positive, over all closed
  trades; a break-even trade is not a win.
- ``equity_curve``: the account's equity over time from fills and mark samples.

Returns are ``Decimal`` fractions (0.0125 = 1.25%) rounded to 10 decimal places;
``None`` where undefined (fewer than two points, a non-positive equity to divide by).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from itertools import pairwise

from server.trading.account import Account
from server.trading.events import Fill
from server.trading.money import CTX, ONE, ZERO, canonical_price, commission_cents
from server.trading.positions import Position, PositionSide, book_fill

RATIO_QUANTUM = Decimal("1E-10")


def _ratio(x: Decimal) -> Decimal:
    return x.quantize(RATIO_QUANTUM, rounding=ROUND_HALF_EVEN, context=CTX)


@dataclass(frozen=True, slots=True)
class EquityPoint:
    time_ms: int
    equity: Decimal


@dataclass(frozen=True, slots=True)
class CashFlow:
    """Money in (> 0) or out (< 0) of the account at ``time_ms``."""

    time_ms: int
    amount: Decimal


@dataclass(frozen=True, slots=True)
class MarkSample:
    time_ms: int
    symbol: str
    price: Decimal


def _period_returns(
    curve: Sequence[EquityPoint], flows: Sequence[CashFlow]
) -> list[tuple[int, Decimal]] | None:
    """(time, 1 + return) of each sub-period; ``None`` if one is undefined."""
    ordered = sorted(flows, key=lambda f: f.time_ms)
    out: list[tuple[int, Decimal]] = []
    j = 0
    # Flows up to the first valuation are already in it.
    while j < len(ordered) and ordered[j].time_ms <= curve[0].time_ms:
        j += 1
    for prev, point in pairwise(curve):
        flow = ZERO
        while j < len(ordered) and ordered[j].time_ms <= point.time_ms:
            flow += ordered[j].amount
            j += 1
        base = prev.equity + flow
        if base <= 0:
            return None
        out.append((point.time_ms, CTX.divide(point.equity, base)))
    return out


def time_weighted_return(
    curve: Sequence[EquityPoint], flows: Sequence[CashFlow] = ()
) -> Decimal | None:
    if len(curve) < 2:
        return None
    periods = _period_returns(curve, flows)
    if periods is None:
        return None
    growth = ONE
    for _, g in periods:
        growth = CTX.multiply(growth, g)
    return _ratio(growth - ONE)


@dataclass(frozen=True, slots=True)
class Drawdown:
    #: The fall from peak to trough as a fraction of the peak (0 when none).
    fraction: Decimal
    peak_ms: int | None = None
    trough_ms: int | None = None
    #: When the index first got back to the peak, if it did.
    recovered_ms: int | None = None


def max_drawdown(curve: Sequence[EquityPoint], flows: Sequence[CashFlow] = ()) -> Drawdown | None:
    if not curve:
        return None
    if len(curve) == 1:
        return Drawdown(ZERO)
    periods = _period_returns(curve, flows)
    if periods is None:
        return None
    index = ONE
    series = [(curve[0].time_ms, index)]
    for t, g in periods:
        index = CTX.multiply(index, g)
        series.append((t, index))
    peak, peak_ms = series[0][1], series[0][0]
    worst = ZERO
    worst_peak = worst_peak_ms = worst_trough_ms = None
    for t, value in series:
        if value >= peak:
            peak, peak_ms = value, t
            continue
        fall = CTX.divide(peak - value, peak)
        if fall > worst:
            worst, worst_peak, worst_peak_ms, worst_trough_ms = fall, peak, peak_ms, t
    if worst_peak is None:
        return Drawdown(ZERO)
    recovered = next(
        (
            t
            for t, value in series
            if worst_trough_ms is not None and t > worst_trough_ms and value >= worst_peak
        ),
        None,
    )
    return Drawdown(_ratio(worst), worst_peak_ms, worst_trough_ms, recovered)


@dataclass(frozen=True, slots=True)
class RoundTrip:
    symbol: str
    side: PositionSide
    opened_ms: int
    closed_ms: int
    #: Shares closed over the trade (its largest size when scaled in and out).
    qty: Decimal
    entry_price: Decimal
    exit_price: Decimal
    realized_pnl: Decimal
    commissions: Decimal

    @property
    def net_pnl(self) -> Decimal:
        return self.realized_pnl - self.commissions


class _Trip:
    __slots__ = ("closed_qty", "commissions", "entry_value", "exit_value", "opened_ms", "pnl")

    def __init__(self, opened_ms: int, commission: Decimal) -> None:
        self.opened_ms = opened_ms
        self.commissions = commission
        self.pnl = ZERO
        self.closed_qty = ZERO
        self.entry_value = ZERO
        self.exit_value = ZERO


def round_trips(fills: Iterable[Fill]) -> list[RoundTrip]:
    """Closed trades, in the order they closed."""
    positions: dict[str, Position] = {}
    trips: dict[str, _Trip] = {}
    out: list[RoundTrip] = []
    for fill in fills:
        before = positions.get(fill.symbol) or Position(fill.symbol)
        held = before.qty
        closing = ZERO
        if held and (held > 0) != (fill.side.sign > 0):
            closing = min(fill.qty, abs(held))
        close_fee = commission_cents(fill.commission * closing / fill.qty) if closing else ZERO
        after, realization = book_fill(before, fill)
        positions[fill.symbol] = after
        trip = trips.get(fill.symbol)
        if trip is None:
            trip = trips[fill.symbol] = _Trip(fill.time_ms, ZERO)
        trip.commissions += close_fee if closing else fill.commission
        if realization is not None:
            trip.pnl += realization.pnl
            trip.closed_qty += realization.qty
            trip.entry_value += realization.qty * realization.entry_price
            trip.exit_value += realization.qty * realization.exit_price
        if closing and (not after.qty or (after.qty > 0) != (held > 0)):
            out.append(
                RoundTrip(
                    symbol=fill.symbol,
                    side=PositionSide.LONG if held > 0 else PositionSide.SHORT,
                    opened_ms=trip.opened_ms,
                    closed_ms=fill.time_ms,
                    qty=trip.closed_qty,
                    entry_price=canonical_price(CTX.divide(trip.entry_value, trip.closed_qty)),
                    exit_price=canonical_price(CTX.divide(trip.exit_value, trip.closed_qty)),
                    realized_pnl=trip.pnl,
                    commissions=trip.commissions,
                )
            )
            del trips[fill.symbol]
            if after.qty:  # flipped: the opening part starts the next trade
                trips[fill.symbol] = _Trip(fill.time_ms, fill.commission - close_fee)
    return out


def realized_pnl(trips: Iterable[RoundTrip]) -> Decimal:
    return sum((t.realized_pnl for t in trips), ZERO)


def win_rate(trips: Sequence[RoundTrip]) -> Decimal | None:
    if not trips:
        return None
    wins = sum(1 for t in trips if t.net_pnl > 0)
    return _ratio(Decimal(wins) / Decimal(len(trips)))


@dataclass(frozen=True, slots=True)
class Performance:
    time_weighted_return: Decimal | None
    max_drawdown: Drawdown | None
    #: Over the closed trades (gross, and net of their commissions).
    realized_pnl: Decimal
    net_realized_pnl: Decimal
    trades: int
    wins: int
    losses: int
    win_rate: Decimal | None


def performance(
    curve: Sequence[EquityPoint], fills: Iterable[Fill], flows: Sequence[CashFlow] = ()
) -> Performance:
    trips = round_trips(fills)
    return Performance(
        time_weighted_return=time_weighted_return(curve, flows),
        max_drawdown=max_drawdown(curve, flows),
        realized_pnl=realized_pnl(trips),
        net_realized_pnl=sum((t.net_pnl for t in trips), ZERO),
        trades=len(trips),
        wins=sum(1 for t in trips if t.net_pnl > 0),
        losses=sum(1 for t in trips if t.net_pnl < 0),
        win_rate=win_rate(trips),
    )


def equity_curve(
    starting_cash: Decimal, fills: Iterable[Fill], marks: Iterable[MarkSample]
) -> list[EquityPoint]:
    """Equity at every distinct mark time, after the fills and marks up to that time.

    Both inputs must be in time order; a fill and a mark at the same time: the fill
    first. Symbols without a mark yet are valued at their last fill price.
    """
    account = Account.open(starting_cash)
    latest: dict[str, Decimal] = {}
    out: list[EquityPoint] = []
    tagged = heapq.merge(
        ((f.time_ms, 0, i, f) for i, f in enumerate(fills)),
        ((m.time_ms, 1, i, m) for i, m in enumerate(marks)),
        key=lambda e: (e[0], e[1], e[2]),
    )
    pending: int | None = None
    for t, kind, _, item in tagged:
        if pending is not None and t != pending:
            out.append(EquityPoint(pending, account.value(latest).equity))
            pending = None
        if kind == 0:
            assert isinstance(item, Fill)
            account.apply(item)
        else:
            assert isinstance(item, MarkSample)
            latest[item.symbol] = item.price
            pending = t
    if pending is not None:
        out.append(EquityPoint(pending, account.value(latest).equity))
    return out
