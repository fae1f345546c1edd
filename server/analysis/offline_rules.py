"""The offline analyst's reading of one symbol: signals, stance, levels, idea.

Deterministic rules over the snapshot (no randomness, no clock), each documented where
it is computed:

- trend, from the signal timeframe's moving averages: the price against EMA(20), EMA(20)
  against SMA(50), SMA(50) against SMA(200): one vote each, up or down;
- momentum: RSI(14) (55 and above up, 45 and below down, between neutral) and the MACD
  histogram's sign: one vote each;
- context: the price against the context timeframe's SMA(50) (else its EMA(20)): one vote;
- stance: the sum of the votes; +2 or more bullish, -2 or less bearish, else neutral;
- confidence: 35 + 8 per vote of the sum for a directional stance (40 for neutral), less
  10 when RSI is stretched in the stance's direction (70+ for bullish, 30- for bearish),
  less 15 when the price is stale, less 15 when the signal timeframe has fewer bars than
  SMA(50) needs; between 5 and 85: a rule set never claims certainty;
- levels: supports and resistances are the session's low/high/VWAP, the previous
  close, Donchian(20) and Bollinger(20,2) bounds of both timeframes; the two nearest on
  each side of the price;
- idea: for a directional stance with confidence 50 or more and an ATR: a limit entry
  at the last price, a stop ``k`` ATRs away (k = 1, 1.5, 2 for a low, medium, high risk
  tolerance; the signal timeframe's ATR for a day trader, the daily one otherwise) and a
  target at twice that distance (reward/risk 2.0).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from server.analysis.bracket import to_tick
from server.analysis.result import KeyLevel, Stance, TradeIdea
from server.analysis.snapshot import (
    RiskTolerance,
    Series,
    Style,
    SymbolSnapshot,
    last_price,
)

STOP_ATRS = {
    RiskTolerance.LOW: Decimal(1),
    RiskTolerance.MEDIUM: Decimal("1.5"),
    RiskTolerance.HIGH: Decimal(2),
}
REWARD_RISK = Decimal(2)
IDEA_MIN_CONFIDENCE = 50
_HORIZON = {Style.DAY: "intraday", Style.SWING: "days", Style.POSITION: "weeks"}


@dataclass(frozen=True, slots=True)
class Vote:
    score: int  # +1, -1 or 0
    reason: str


@dataclass(frozen=True, slots=True)
class Level:
    price: float
    basis: str


@dataclass(frozen=True, slots=True)
class Reading:
    last: float
    trend: list[Vote]
    momentum: list[Vote]
    context: list[Vote]
    score: int
    stance: Stance
    confidence: int
    penalties: list[str]
    supports: list[Level]
    resistances: list[Level]
    atr: float | None
    atr_timeframe: str | None
    idea: TradeIdea | None


def _vote(up: bool, down: bool, reason_up: str, reason_down: str) -> Vote | None:
    if up:
        return Vote(1, reason_up)
    if down:
        return Vote(-1, reason_down)
    return None


def _compare(a: float | None, b: float | None, a_name: str, b_name: str) -> Vote | None:
    """A vote for "A above B" (+1) or "A below B" (-1); none when either is unknown."""
    if a is None or b is None:
        return None
    return _vote(a > b, a < b, f"{a_name} above {b_name}", f"{a_name} below {b_name}")


def _trend_votes(last: float, s: Series) -> list[Vote]:
    ind, tf = s.indicators, s.timeframe
    votes = (
        _compare(last, ind.ema20, "price", f"the {tf} EMA(20)"),
        _compare(ind.ema20, ind.sma50, f"{tf} EMA(20)", "SMA(50)"),
        _compare(ind.sma50, ind.sma200, f"{tf} SMA(50)", "SMA(200)"),
    )
    return [v for v in votes if v is not None]


def _momentum_votes(s: Series) -> list[Vote]:
    ind = s.indicators
    votes: list[Vote | None] = []
    if ind.rsi14 is not None:
        votes.append(
            _vote(
                ind.rsi14 >= 55,
                ind.rsi14 <= 45,
                f"{s.timeframe} RSI(14) showing upward momentum",
                f"{s.timeframe} RSI(14) showing downward momentum",
            )
        )
    if ind.macd_hist is not None:
        votes.append(
            _vote(
                ind.macd_hist > 0,
                ind.macd_hist < 0,
                f"{s.timeframe} MACD histogram positive",
                f"{s.timeframe} MACD histogram negative",
            )
        )
    return [v for v in votes if v is not None]


def _context_votes(last: float, s: Series) -> list[Vote]:
    ind = s.indicators
    average, name = (ind.sma50, "SMA(50)") if ind.sma50 is not None else (ind.ema20, "EMA(20)")
    vote = _compare(last, average, "price", f"the {s.timeframe} {name}")
    return [vote] if vote is not None else []


def _levels(snapshot: SymbolSnapshot, last: float) -> tuple[list[Level], list[Level]]:
    candidates: list[Level] = []
    session = snapshot.session
    if session is not None:
        candidates += [Level(session.low, "session low"), Level(session.high, "session high")]
        if session.vwap is not None:
            candidates.append(Level(session.vwap, "session VWAP"))
        if session.prev_close is not None:
            candidates.append(Level(session.prev_close, "previous close"))
    for s in snapshot.series:
        ind = s.indicators
        for value, basis in (
            (ind.donchian_lower, f"{s.timeframe} Donchian(20) low"),
            (ind.donchian_upper, f"{s.timeframe} Donchian(20) high"),
            (ind.bb_lower, f"{s.timeframe} lower Bollinger band"),
            (ind.bb_upper, f"{s.timeframe} upper Bollinger band"),
        ):
            if value is not None:
                candidates.append(Level(value, basis))
    # Nearest first; ties broken by the basis text, so the order never depends on input order.
    supports = sorted(
        (c for c in candidates if c.price < last), key=lambda c: (last - c.price, c.basis)
    )
    resistances = sorted(
        (c for c in candidates if c.price > last), key=lambda c: (c.price - last, c.basis)
    )
    return supports[:2], resistances[:2]


def _atr(snapshot: SymbolSnapshot) -> tuple[float | None, str | None]:
    """The signal timeframe's ATR for a day trader; the daily ATR otherwise (any timeframe
    that has one as a fallback)."""
    series = list(snapshot.series)
    if snapshot.preferences.style is not Style.DAY:
        series.sort(key=lambda s: s.timeframe != "1d")
    for s in series:
        if s.indicators.atr14 is not None and s.indicators.atr14 > 0:
            return s.indicators.atr14, s.timeframe
    return None, None


def _idea(
    snapshot: SymbolSnapshot,
    *,
    stance: Stance,
    last: float,
    atr: float,
    supports: list[Level],
    resistances: list[Level],
) -> TradeIdea | None:
    tolerance = snapshot.preferences.risk_tolerance or RiskTolerance.MEDIUM
    entry = to_tick(Decimal(repr(last)))
    distance = to_tick(Decimal(repr(atr)) * STOP_ATRS[tolerance])
    if distance <= 0:
        return None
    buy = stance is Stance.BULLISH
    stop = entry - distance if buy else entry + distance
    target = entry + REWARD_RISK * distance if buy else entry - REWARD_RISK * distance
    if stop <= 0 or target <= 0:
        return None
    guard = supports[0] if buy and supports else resistances[0] if not buy and resistances else None
    invalidation = (
        f"a close {'below' if buy else 'above'} the {guard.basis}" if guard is not None else ""
    )
    return TradeIdea(
        side="buy" if buy else "sell",
        entry=entry,
        stop=stop,
        target=target,
        horizon=_HORIZON.get(snapshot.preferences.style or Style.SWING, "days"),
        invalidation=invalidation,
    )


def read(snapshot: SymbolSnapshot) -> Reading | None:
    """The rule-based reading, or ``None`` when there is no price at all."""
    last = last_price(snapshot)
    if last is None:
        return None
    signal = snapshot.series[0] if snapshot.series else None
    context = snapshot.series[1] if len(snapshot.series) > 1 else None
    trend = _trend_votes(last, signal) if signal else []
    momentum = _momentum_votes(signal) if signal else []
    ctx = _context_votes(last, context) if context else []
    score = sum(v.score for v in (*trend, *momentum, *ctx))
    stance = Stance.BULLISH if score >= 2 else Stance.BEARISH if score <= -2 else Stance.NEUTRAL
    confidence = 40 if stance is Stance.NEUTRAL else 35 + 8 * abs(score)
    penalties: list[str] = []
    rsi = signal.indicators.rsi14 if signal else None
    if rsi is not None and (
        (stance is Stance.BULLISH and rsi >= 70) or (stance is Stance.BEARISH and rsi <= 30)
    ):
        confidence -= 10
        penalties.append("RSI is stretched in the direction of the stance")
    if not snapshot.live:
        confidence -= 15
        penalties.append("the price is not live")
    if signal is None or signal.bars_used < 50:
        confidence -= 15
        penalties.append("too few bars on the signal timeframe for the slower averages")
    confidence = max(5, min(85, confidence))
    supports, resistances = _levels(snapshot, last)
    atr, atr_tf = _atr(snapshot)
    idea = None
    if stance is not Stance.NEUTRAL and confidence >= IDEA_MIN_CONFIDENCE and atr is not None:
        idea = _idea(
            snapshot, stance=stance, last=last, atr=atr, supports=supports, resistances=resistances
        )
    return Reading(
        last,
        trend,
        momentum,
        ctx,
        score,
        stance,
        confidence,
        penalties,
        supports,
        resistances,
        atr,
        atr_tf,
        idea,
    )


def key_levels(reading: Reading) -> list[KeyLevel]:
    out = [
        KeyLevel("support", to_tick(Decimal(repr(lv.price))), lv.basis) for lv in reading.supports
    ]
    out += [
        KeyLevel("resistance", to_tick(Decimal(repr(lv.price))), lv.basis)
        for lv in reading.resistances
    ]
    return out
