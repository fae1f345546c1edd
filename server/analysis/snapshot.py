"""What an analyst sees: one immutable snapshot per request, stored with the analysis.

A snapshot is taken once, when the request arrives, from inputs passed in (the builder
is in ``server.analysis.snapshot_build``); the analyst, the check and the user all see
this same object, so "the RSI of 61.4" in the prose can be traced to the number it came
from. It is pure data (msgspec structs) and:

- serialisable: ``encode`` gives its canonical JSON (struct fields in definition order,
  dict keys sorted, floats in shortest round-trip form, ``Decimal`` as strings), and
  ``decode`` reads that back into the same structs;
- fingerprinted: ``fingerprint`` is the SHA-256 of the canonical JSON. Two snapshots
  have the same fingerprint exactly when an analyst would be shown the same numbers,
  which is what the answer cache keys on. The time the snapshot was taken is *not* in
  it (it is stored beside it): a quiet market asked twice gives the same snapshot.

Conventions: prices and indicator values are floats rounded to 4 decimals (market
data, never money we account for); RSI and percentages to 2 decimals; volumes are
whole shares. Positions, orders and the account are ``Decimal`` (money). Missing values
are ``None`` (never NaN: JSON has no NaN). Bars are encoded as arrays
``[startMs, open, high, low, close, volume]`` to keep the prompt small.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal
from enum import StrEnum
from typing import Literal, TypeAlias

import msgspec


class Style(StrEnum):
    """The caller's stated trading style: which bars the analysis reads first."""

    DAY = "day"
    SWING = "swing"
    POSITION = "position"


class RiskTolerance(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class Preferences(msgspec.Struct, frozen=True, rename="camel"):
    style: Style | None = None
    risk_tolerance: RiskTolerance | None = None


#: Nothing stated.
NO_PREFERENCES = Preferences()


class QuoteView(msgspec.Struct, frozen=True, rename="camel"):
    bid: float
    bid_size: int
    ask: float
    ask_size: int
    time_ms: int


class TradeView(msgspec.Struct, frozen=True, rename="camel"):
    price: float
    size: int
    time_ms: int


class SessionView(msgspec.Struct, frozen=True, rename="camel"):
    """The New York trading day of the last trade, from the live trades."""

    date: str
    open: float
    high: float
    low: float
    volume: int
    trades: int
    vwap: float | None
    #: Close of the previous daily bar, and the last price's change from it.
    prev_close: float | None = None
    change: float | None = None
    change_pct: float | None = None


class BarView(msgspec.Struct, frozen=True, array_like=True):
    start_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: int


class Indicators(msgspec.Struct, frozen=True, rename="camel"):
    """The standard set on one timeframe, from its closed bars (``None``: not enough
    bars yet). Trend: EMA(20), SMA(50), SMA(200). Momentum: RSI(14), MACD(12,26,9).
    Volatility: ATR(14), Bollinger(20,2). Levels: Donchian(20), session VWAP (intraday
    timeframes only)."""

    ema20: float | None = None
    sma50: float | None = None
    sma200: float | None = None
    rsi14: float | None = None
    macd: float | None = None
    macd_signal: float | None = None
    macd_hist: float | None = None
    atr14: float | None = None
    bb_upper: float | None = None
    bb_middle: float | None = None
    bb_lower: float | None = None
    donchian_upper: float | None = None
    donchian_lower: float | None = None
    vwap: float | None = None


class Series(msgspec.Struct, frozen=True, rename="camel"):
    timeframe: str
    #: Bars the indicators were computed from (more than are shown).
    bars_used: int
    indicators: Indicators
    #: The most recent closed bars, oldest first.
    bars: tuple[BarView, ...]


class PositionView(msgspec.Struct, frozen=True, rename="camel"):
    """The caller's position in one symbol (mapped from the trading domain)."""

    symbol: str
    side: Literal["long", "short"]
    qty: Decimal  # shares, positive for either side
    avg_entry_price: Decimal
    market_value: Decimal  # signed: negative for a short
    unrealized_pnl: Decimal


class OrderView(msgspec.Struct, frozen=True, rename="camel"):
    """One of the caller's open orders in a symbol (mapped from the trading domain)."""

    id: str
    side: Literal["buy", "sell"]
    type: str  # market, limit, stop, stop_limit, trailing_stop
    qty: Decimal | None
    status: str
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    time_in_force: str | None = None


class PositionRisk(msgspec.Struct, frozen=True, rename="camel"):
    """Derived from the position, its open orders and the account."""

    unrealized_pnl_pct: Decimal | None
    #: Share of account equity (absolute market value / equity), percent.
    weight_pct: Decimal | None
    #: The nearest working stop order that would close the position, if any.
    protective_stop: Decimal | None
    #: What the position loses if that stop fills at its price.
    loss_at_stop: Decimal | None


class AlertView(msgspec.Struct, frozen=True, rename="camel"):
    id: str
    #: e.g. "LAST crossingUp 230.5 AND RSI(14) 5m lessThan 70 (once)".
    summary: str
    #: The constant levels the alert watches.
    levels: tuple[float, ...] = ()


class NewsItem(msgspec.Struct, frozen=True, rename="camel"):
    title: str
    url: str
    published_utc: str
    publisher: str | None = None


class SymbolSnapshot(msgspec.Struct, frozen=True, rename="camel", tag_field="kind", tag="symbol"):
    symbol: str
    #: Whether the last trade is recent (within the server's staleness window).
    live: bool
    quote: QuoteView | None
    trade: TradeView | None
    session: SessionView | None
    #: The signal timeframe first, the context timeframe second.
    series: tuple[Series, ...]
    position: PositionView | None = None
    position_risk: PositionRisk | None = None
    orders: tuple[OrderView, ...] = ()
    alerts: tuple[AlertView, ...] = ()
    news: tuple[NewsItem, ...] = ()
    preferences: Preferences = NO_PREFERENCES
    #: What could not be had (no history, news unavailable, ...), said plainly.
    notes: tuple[str, ...] = ()

    @property
    def last_price(self) -> float | None:
        return last_price(self)


class AccountView(msgspec.Struct, frozen=True, rename="camel"):
    equity: Decimal
    cash: Decimal
    buying_power: Decimal | None = None


class Exposure(msgspec.Struct, frozen=True, rename="camel"):
    long_value: Decimal
    short_value: Decimal  # absolute
    gross: Decimal
    net: Decimal
    gross_pct: Decimal | None  # of equity
    net_pct: Decimal | None


class PortfolioSnapshot(
    msgspec.Struct, frozen=True, rename="camel", tag_field="kind", tag="portfolio"
):
    account: AccountView | None
    exposure: Exposure
    holdings: tuple[SymbolSnapshot, ...]
    preferences: Preferences = NO_PREFERENCES
    notes: tuple[str, ...] = ()


Snapshot: TypeAlias = SymbolSnapshot | PortfolioSnapshot

_ENCODER = msgspec.json.Encoder(order="deterministic")
_DECODER = msgspec.json.Decoder(Snapshot)


def encode(snapshot: Snapshot) -> bytes:
    """The canonical JSON of ``snapshot``."""
    return _ENCODER.encode(snapshot)


def decode(data: bytes | str) -> Snapshot:
    return _DECODER.decode(data)


def fingerprint(snapshot: Snapshot) -> str:
    """SHA-256 (hex) of the canonical JSON."""
    return hashlib.sha256(encode(snapshot)).hexdigest()


def subject_of(snapshot: Snapshot) -> str:
    """The symbol, or "portfolio"."""
    return snapshot.symbol if isinstance(snapshot, SymbolSnapshot) else "portfolio"


def last_price(snapshot: SymbolSnapshot) -> float | None:
    return price_from(snapshot.trade, snapshot.quote, snapshot.series)


def price_from(
    trade: TradeView | None, quote: QuoteView | None, series: tuple[Series, ...]
) -> float | None:
    """The price an analysis is about: the last trade, else the quote's midpoint (both
    sides known), else the last bar's close."""
    if trade is not None:
        return trade.price
    if quote is not None and quote.bid > 0 and quote.ask > 0:
        return round((quote.bid + quote.ask) / 2, 4)
    for s in series:
        if s.bars:
            return s.bars[-1].close
    return None


def schema() -> dict[str, object]:
    """JSON Schema of a snapshot (shown to the model once, in the cached prompt prefix)."""
    out: dict[str, object] = msgspec.json.schema(Snapshot)
    return out
