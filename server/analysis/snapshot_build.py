"""Building a snapshot from what the server knows, passed in: pure and deterministic.

The service gathers the inputs (market state, closed bars, the caller's position,
orders, alerts, news, preferences) and calls ``symbol_snapshot`` or
``portfolio_snapshot``; the same inputs always give the same snapshot, byte for byte.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from server.analysis.indicator_set import compute
from server.analysis.snapshot import (
    NO_PREFERENCES,
    AccountView,
    AlertView,
    BarView,
    Exposure,
    NewsItem,
    OrderView,
    PortfolioSnapshot,
    PositionRisk,
    PositionView,
    Preferences,
    QuoteView,
    Series,
    SessionView,
    Style,
    SymbolSnapshot,
    TradeView,
    price_from,
)
from server.market.state import SymbolState
from server.market.timeframes import Bar, Timeframe
from server.market.trading_day import day_window
from streams.events import Quote, Trade

#: Closed bars shown per timeframe (the indicators use more): a single symbol shows
#: enough to read the recent structure; a portfolio review shows a few per holding,
#: so that 50 holdings still fit a prompt.
SYMBOL_BARS_SHOWN = (30, 20)
PORTFOLIO_BARS_SHOWN = (5, 5)

_HUNDRED = Decimal(100)
_PCT = Decimal("0.01")


def timeframes_for(style: Style | None) -> tuple[Timeframe, Timeframe]:
    """(signal, context) timeframes: a day trader reads 5-minute bars against the daily
    ones, a swing trader hourly against daily (also the default), a position trader
    daily bars with hourly ones for timing."""
    if style is Style.DAY:
        return Timeframe.M5, Timeframe.D1
    if style is Style.POSITION:
        return Timeframe.D1, Timeframe.H1
    return Timeframe.H1, Timeframe.D1


@dataclass(frozen=True, slots=True)
class SymbolInputs:
    """Everything a symbol's snapshot is built from."""

    symbol: str
    #: The live state (``None``: nothing received for the symbol yet).
    state: SymbolState | None
    #: Closed bars per timeframe, oldest first, in (signal, context) order.
    bars: Mapping[Timeframe, Sequence[Bar]]
    #: The day's bar (the session's statistics), forming or the last one closed.
    day: Bar | None = None
    position: PositionView | None = None
    orders: Sequence[OrderView] = ()
    alerts: Sequence[AlertView] = ()
    news: Sequence[NewsItem] = ()
    preferences: Preferences = NO_PREFERENCES
    notes: Sequence[str] = ()
    #: Account equity, for the position's weight.
    equity: Decimal | None = None
    #: When the request arrived (wall clock, ms), and how long ago the last trade may
    #: have been *received* to count as live. Receipt, not exchange time: a replay of a
    #: recorded day is live while it plays (DESIGN.md: judge a feed by its own clock).
    taken_at_ms: int = 0
    stale_after_ms: int = 10_000
    bars_shown: tuple[int, int] = SYMBOL_BARS_SHOWN


def _price(value: float) -> float:
    return round(value, 4)


def _pct(part: float, whole: float) -> float | None:
    if whole == 0 or not math.isfinite(part) or not math.isfinite(whole):
        return None
    return round(part / whole * 100.0, 2)


def _quote(event: object) -> QuoteView | None:
    if not isinstance(event, Quote):
        return None
    return QuoteView(_price(event.bp), event.bs, _price(event.ap), event.ask_size, event.t)


def _trade(event: object) -> TradeView | None:
    if not isinstance(event, Trade):
        return None
    return TradeView(_price(event.p), event.s, event.t)


def _prev_close(daily: Sequence[Bar], session_start_ms: int | None) -> float | None:
    """The close of the last daily bar before the session of the last trade."""
    for bar in reversed(daily):
        if session_start_ms is None or bar.start_ms < session_start_ms:
            return _price(bar.close)
    return None


def _session(day: Bar, daily: Sequence[Bar] | None, last: float | None) -> SessionView:
    window = day_window(day.start_ms)
    prev = _prev_close(daily, window.start_ms) if daily is not None else None
    change = None if prev is None or last is None else _price(last - prev)
    # A day of prints none of which counted for volume has no VWAP (the bar's is its close).
    vwap = day.vwap if day.volume else None
    return SessionView(
        date=window.day.isoformat(),
        open=_price(day.open),
        high=_price(day.high),
        low=_price(day.low),
        volume=day.volume,
        trades=day.trades,
        vwap=None if vwap is None else _price(vwap),
        prev_close=prev,
        change=change,
        change_pct=None if change is None or prev is None else _pct(change, prev),
    )


def _series(timeframe: Timeframe, bars: Sequence[Bar], shown: int) -> Series:
    closed = [b for b in bars if b.final]
    return Series(
        timeframe=timeframe.value,
        bars_used=len(closed),
        indicators=compute(closed, intraday=timeframe is not Timeframe.D1),
        bars=tuple(
            BarView(
                b.start_ms, _price(b.open), _price(b.high), _price(b.low), _price(b.close), b.volume
            )
            for b in closed[-shown:]
        )
        if shown > 0
        else (),
    )


def position_risk(
    position: PositionView, orders: Sequence[OrderView], equity: Decimal | None
) -> PositionRisk:
    """P&L in percent of cost, weight in percent of equity, and the stop that protects
    the position: the nearest working stop (or stop-limit) order on the closing side."""
    cost = position.market_value - position.unrealized_pnl
    pnl_pct = (position.unrealized_pnl / abs(cost) * _HUNDRED).quantize(_PCT) if cost else None
    weight = (
        (abs(position.market_value) / equity * _HUNDRED).quantize(_PCT)
        if equity is not None and equity > 0
        else None
    )
    closing = "sell" if position.side == "long" else "buy"
    stops = [
        o.stop_price
        for o in orders
        if o.side == closing and o.stop_price is not None and "stop" in o.type
    ]
    stop: Decimal | None = None
    if stops:
        # The nearest to the market: the highest stop below a long, the lowest above a short.
        stop = max(stops) if position.side == "long" else min(stops)
    loss = None
    if stop is not None:
        sign = 1 if position.side == "long" else -1
        loss = (sign * (stop - position.avg_entry_price) * position.qty).quantize(_PCT)
    return PositionRisk(pnl_pct, weight, stop, loss)


def symbol_snapshot(inputs: SymbolInputs) -> SymbolSnapshot:
    state = inputs.state
    notes = [*inputs.notes]
    timeframes = list(inputs.bars)
    shown = inputs.bars_shown
    series = tuple(
        _series(tf, inputs.bars[tf], shown[i] if i < len(shown) else 0)
        for i, tf in enumerate(timeframes)
    )
    quote_item = state.last_quote if state is not None else None
    trade_item = state.last_trade if state is not None else None
    quote = _quote(quote_item.event) if quote_item is not None else None
    trade = _trade(trade_item.event) if trade_item is not None else None
    live = (
        trade_item is not None
        and inputs.taken_at_ms - trade_item.received_ns // 1_000_000 <= inputs.stale_after_ms
    )
    if trade is None:
        notes.append("no trade received yet for this symbol")
    elif not live:
        notes.append("the last trade is older than the staleness window: prices may be stale")
    session = None
    if inputs.day is not None:
        last = price_from(trade, quote, series)
        session = _session(inputs.day, inputs.bars.get(Timeframe.D1), last)
    for s in series:
        if s.bars_used == 0:
            notes.append(f"no closed {s.timeframe} bars: no indicators on that timeframe")
    position = inputs.position
    orders = tuple(sorted(inputs.orders, key=lambda o: o.id))
    return SymbolSnapshot(
        symbol=inputs.symbol,
        live=live,
        quote=quote,
        trade=trade,
        session=session,
        series=series,
        position=position,
        position_risk=position_risk(position, orders, inputs.equity) if position else None,
        orders=orders,
        alerts=tuple(sorted(inputs.alerts, key=lambda a: a.id)),
        news=tuple(inputs.news),
        preferences=inputs.preferences,
        notes=tuple(notes),
    )


def exposure(positions: Iterable[PositionView], equity: Decimal | None) -> Exposure:
    long_value = sum((p.market_value for p in positions if p.market_value > 0), Decimal(0))
    short_value = sum((-p.market_value for p in positions if p.market_value < 0), Decimal(0))
    gross = long_value + short_value
    net = long_value - short_value

    def pct(v: Decimal) -> Decimal | None:
        return (v / equity * _HUNDRED).quantize(_PCT) if equity is not None and equity > 0 else None

    return Exposure(long_value, short_value, gross, net, pct(gross), pct(net))


def portfolio_snapshot(
    account: AccountView | None,
    holdings: Sequence[SymbolSnapshot],
    *,
    preferences: Preferences = NO_PREFERENCES,
    notes: Sequence[str] = (),
) -> PortfolioSnapshot:
    """The account, its exposure, and every holding's own snapshot (ordered by symbol)."""
    ordered = tuple(sorted(holdings, key=lambda h: h.symbol))
    positions = [h.position for h in ordered if h.position is not None]
    equity = account.equity if account is not None else None
    all_notes = list(notes)
    if account is None:
        all_notes.append("no account figures: weights and exposure percentages unknown")
    return PortfolioSnapshot(
        account=account,
        exposure=exposure(positions, equity),
        holdings=ordered,
        preferences=preferences,
        notes=tuple(all_notes),
    )


# ------------------------------------------------------------------ alerts


_PRICE_SOURCES = frozenset({"LAST", "BID", "ASK", "MID"})


def _number_text(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    number = float(value)
    return str(int(number)) if number.is_integer() else f"{number:.6g}"


def _operand_text(operand: Any) -> str:
    if isinstance(operand, str):
        return operand
    if isinstance(operand, Mapping):
        text = f"{operand.get('indicator', '?')} {operand.get('timeframe', '?')}"
        output = operand.get("output", "value")
        return text if output == "value" else f"{text}.{output}"
    return _number_text(operand)


def _condition_text(c: Mapping[str, Any]) -> str:
    left = _operand_text(c.get("left"))
    op = str(c.get("op", "?"))
    if "value" in c:
        return f"{left} {op} {_number_text(c['value'])}"
    if "right" in c:
        return f"{left} {op} {_operand_text(c['right'])}"
    if "channel" in c:
        ch = c["channel"]
        return f"{left} {op} [{_operand_text(ch.get('lower'))}, {_operand_text(ch.get('upper'))}]"
    if "move" in c:
        mv = c["move"]
        unit = "%" if mv.get("percent") else ""
        return (
            f"{left} {op} by {_number_text(mv.get('by'))}{unit} within "
            f"{_number_text(mv.get('bars'))} {mv.get('timeframe', '?')} bars"
        )
    return f"{left} {op}"


def _levels(c: Mapping[str, Any]) -> list[float]:
    """Constant prices compared with a price (not thresholds of an indicator)."""
    left = c.get("left")
    if not isinstance(left, str) or left not in _PRICE_SOURCES:
        return []
    out: list[float] = []
    value = c.get("value")
    if isinstance(value, int | float) and not isinstance(value, bool):
        out.append(float(value))
    channel = c.get("channel")
    if isinstance(channel, Mapping):
        for side in ("lower", "upper"):
            bound = channel.get(side)
            if isinstance(bound, int | float) and not isinstance(bound, bool):
                out.append(float(bound))
    return out


def alert_view(alert_id: str, definition: Mapping[str, Any]) -> AlertView:
    """A stored alert definition (``server.alerts.model`` document) as the analyst sees it."""
    conditions = [c for c in definition.get("conditions", ()) if isinstance(c, Mapping)]
    trigger = definition.get("trigger") or {}
    mode = trigger.get("mode", "once") if isinstance(trigger, Mapping) else "once"
    summary = " AND ".join(_condition_text(c) for c in conditions) or "(no conditions)"
    levels = sorted({level for c in conditions for level in _levels(c)})
    return AlertView(id=alert_id, summary=f"{summary} ({mode})", levels=tuple(levels))
