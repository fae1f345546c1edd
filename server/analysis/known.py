"""Every number a snapshot holds, and the ones that follow from it by one obvious step,
by unit: what a figure in the prose may be matched against (``server.analysis.check``).

Dollars: prices (quote, trade, session, bars, indicators except RSI, alerts' levels,
orders' prices, the position's prices) and money (P&L, market values, the account),
plus the dollar distance from the last price to every level, the session's range and
the Bollinger width. Percentages: the session's change, the distance from the last
price to every level, the change from each shown bar's close, the position's P&L and
weight, exposure, ATR and Bollinger width as a share of price. Plain: RSI, volumes,
sizes, quantities, counts (orders, alerts, holdings, news items). And any figure written
in a text of the snapshot (a headline, an alert's summary), with its unit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from server.analysis.figures import Unit, extract
from server.analysis.result import Assessment
from server.analysis.snapshot import (
    PortfolioSnapshot,
    Snapshot,
    SymbolSnapshot,
    last_price,
)


@dataclass(slots=True)
class FigureSet:
    """Magnitudes (>= 0), sorted, per unit."""

    dollars: list[float] = field(default_factory=list)
    percents: list[float] = field(default_factory=list)
    plain: list[float] = field(default_factory=list)

    def merged(self, other: FigureSet) -> FigureSet:
        return FigureSet(
            sorted(self.dollars + other.dollars),
            sorted(self.percents + other.percents),
            sorted(self.plain + other.plain),
        )


class _Collector:
    def __init__(self) -> None:
        self.dollars: list[float] = []
        self.percents: list[float] = []
        self.plain: list[float] = []

    @staticmethod
    def _add(into: list[float], values: Iterable[float | Decimal | int | None]) -> None:
        for v in values:
            if v is None:
                continue
            f = abs(float(v))
            if math.isfinite(f):
                into.append(f)

    def dollar(self, *values: float | Decimal | int | None) -> None:
        self._add(self.dollars, values)

    def percent(self, *values: float | Decimal | int | None) -> None:
        self._add(self.percents, values)

    def number(self, *values: float | Decimal | int | None) -> None:
        self._add(self.plain, values)

    def text(self, text: str) -> None:
        """The figures written in a text of the snapshot (a headline, an alert)."""
        for figure in extract(text):
            pool = {Unit.DOLLAR: self.dollars, Unit.PERCENT: self.percents}.get(
                figure.unit, self.plain
            )
            pool.append(float(figure.value))

    def distances(self, last: float | None, *levels: float | Decimal | None) -> None:
        """From the last price to each level: in dollars and in percent of either."""
        if last is None or last == 0:
            return
        for level in levels:
            if level is None:
                continue
            lv = float(level)
            self.dollar(lv - last)
            self.percent((lv - last) / last * 100.0)
            if lv != 0:
                self.percent((last - lv) / lv * 100.0)

    def figures(self) -> FigureSet:
        return FigureSet(sorted(self.dollars), sorted(self.percents), sorted(self.plain))


def _symbol(c: _Collector, s: SymbolSnapshot) -> None:
    last = last_price(s)
    c.dollar(last)
    if s.quote is not None:
        q = s.quote
        c.dollar(q.bid, q.ask, (q.bid + q.ask) / 2, q.ask - q.bid)
        c.number(q.bid_size, q.ask_size)
        c.distances(last, q.bid, q.ask)
    if s.trade is not None:
        c.number(s.trade.size)
    if s.session is not None:
        d = s.session
        c.dollar(d.open, d.high, d.low, d.vwap, d.prev_close, d.change, d.high - d.low)
        c.percent(d.change_pct)
        c.number(d.volume, d.trades)
        c.distances(last, d.open, d.high, d.low, d.vwap, d.prev_close)
    for series in s.series:
        ind = series.indicators
        levels = (
            ind.ema20,
            ind.sma50,
            ind.sma200,
            ind.bb_upper,
            ind.bb_middle,
            ind.bb_lower,
            ind.donchian_upper,
            ind.donchian_lower,
            ind.vwap,
        )
        c.dollar(*levels, ind.macd, ind.macd_signal, ind.macd_hist, ind.atr14)
        c.number(ind.rsi14, series.bars_used, len(series.bars))
        c.distances(last, *levels)
        if ind.bb_upper is not None and ind.bb_lower is not None:
            width = ind.bb_upper - ind.bb_lower
            c.dollar(width)
            if ind.bb_middle:
                c.percent(width / ind.bb_middle * 100.0)
        if last and ind.atr14 is not None:
            c.percent(ind.atr14 / last * 100.0)
        for bar in series.bars:
            c.dollar(bar.open, bar.high, bar.low, bar.close, bar.high - bar.low)
            c.number(bar.volume)
            c.distances(last, bar.close)
        if series.bars:
            c.dollar(max(b.high for b in series.bars), min(b.low for b in series.bars))
    if s.position is not None:
        p = s.position
        c.dollar(p.avg_entry_price, p.market_value, p.unrealized_pnl)
        c.number(p.qty)
        c.distances(last, p.avg_entry_price)
    if s.position_risk is not None:
        r = s.position_risk
        c.percent(r.unrealized_pnl_pct, r.weight_pct)
        c.dollar(r.protective_stop, r.loss_at_stop)
        c.distances(last, r.protective_stop)
    for order in s.orders:
        c.number(order.qty)
        c.dollar(order.limit_price, order.stop_price)
        c.distances(last, order.limit_price, order.stop_price)
    for alert in s.alerts:
        c.dollar(*alert.levels)
        c.distances(last, *alert.levels)
        c.text(alert.summary)
    for item in s.news:
        c.text(item.title)
    c.number(len(s.orders), len(s.alerts), len(s.news))


def _portfolio(c: _Collector, p: PortfolioSnapshot) -> None:
    if p.account is not None:
        c.dollar(p.account.equity, p.account.cash, p.account.buying_power)
    e = p.exposure
    c.dollar(e.long_value, e.short_value, e.gross, e.net)
    c.percent(e.gross_pct, e.net_pct)
    c.number(len(p.holdings))
    for holding in p.holdings:
        _symbol(c, holding)


def known_figures(snapshot: Snapshot) -> FigureSet:
    c = _Collector()
    if isinstance(snapshot, SymbolSnapshot):
        _symbol(c, snapshot)
    else:
        _portfolio(c, snapshot)
    return c.figures()


def own_figures(assessment: Assessment, snapshot: Snapshot) -> FigureSet:
    """The assessment's own numbers: its confidence, its levels, and its idea with the
    idea's risk and reward per share, reward/risk, and distances from entry and from
    the last price."""
    c = _Collector()
    c.number(assessment.confidence)
    c.percent(assessment.confidence)
    c.dollar(*(level.price for level in assessment.key_levels))
    idea = assessment.trade_idea
    if idea is not None:
        entry, stop, target = float(idea.entry), float(idea.stop), float(idea.target)
        risk, reward = abs(entry - stop), abs(target - entry)
        c.dollar(entry, stop, target, risk, reward)
        if risk > 0:
            c.number(reward / risk)
        if entry:
            c.percent(risk / entry * 100.0, reward / entry * 100.0)
        last = last_price(snapshot) if isinstance(snapshot, SymbolSnapshot) else None
        c.distances(last, entry, stop, target)
    return c.figures()
