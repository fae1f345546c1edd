"""The offline analyst: a deterministic, rule-based analysis of the same snapshot, the
embedded default (no API key, no network, no cost).

It streams exactly like the model does (the prose in text deltas, then the structured
assessment, then usage: zero tokens, zero cost), so a client cannot tell the transport
apart; the result says ``analyst: "rule-based"`` and the prose opens by saying so.
The same snapshot gives the same chunks, byte for byte. Every figure the prose states
is formatted from the snapshot, so the check verifies all of them.

The reading itself is in ``server.analysis.offline_rules``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from decimal import Decimal

from server.analysis.offline_rules import Reading, key_levels, read
from server.analysis.port import AnalysisRequest
from server.analysis.result import AnalystChunk, Assessment, Stance, TextDelta, Usage
from server.analysis.snapshot import PortfolioSnapshot, SymbolSnapshot

LABEL = "rule-based"
#: Characters per text delta (cut at a space): the prose arrives the way a model's does.
DELTA_CHARS = 48


def _usd(value: float | Decimal) -> str:
    v = float(value)
    sign = "-" if v < 0 else ""
    return f"{sign}${abs(v):,.2f}" if abs(v) >= 1 else f"{sign}${abs(v):.4f}"


def _money(value: float | Decimal) -> str:
    """Cash and P&L: always to the cent."""
    v = float(value)
    return f"{'-' if v < 0 else ''}${abs(v):,.2f}"


def _pct(value: float | Decimal) -> str:
    return f"{abs(float(value)):.1f}%"


def _shares(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _distance(last: float, level: float) -> str:
    """ "2.1% above" / "0.4% below": the price relative to ``level``."""
    if level == 0:
        return ""
    pct = (last - level) / level * 100.0
    return f"{_pct(pct)} {'above' if pct >= 0 else 'below'}"


def _symbol_prose(s: SymbolSnapshot, r: Reading | None) -> str:
    out: list[str] = [f"Rule-based read of {s.symbol} (no language model involved)."]
    if r is None:
        out.append("There is no trade, quote or bar for it yet, so there is nothing to read.")
        return " ".join(out)
    parts = [f"The last price is {_usd(r.last)}"]
    if s.session is not None and s.session.change_pct is not None and s.session.prev_close:
        direction = "up" if s.session.change_pct >= 0 else "down"
        parts.append(
            f", {direction} {_pct(s.session.change_pct)} from the previous close of "
            f"{_usd(s.session.prev_close)}"
        )
    out.append("".join(parts) + ("." if s.live else " (not live: it may be stale)."))
    if s.session is not None:
        text = f"Today's range is {_usd(s.session.low)} to {_usd(s.session.high)}"
        if s.session.vwap is not None:
            text += f", with the session VWAP at {_usd(s.session.vwap)}"
        out.append(text + ".")
    signal = s.series[0] if s.series else None
    if signal is not None:
        ind = signal.indicators
        if ind.ema20 is not None:
            out.append(
                f"On {signal.timeframe} bars the price is {_distance(r.last, ind.ema20)} "
                f"the EMA(20) at {_usd(ind.ema20)}"
                + (
                    f" and {_distance(r.last, ind.sma50)} the SMA(50) at {_usd(ind.sma50)}."
                    if ind.sma50
                    else "."
                )
            )
        if ind.rsi14 is not None:
            text = f"RSI(14) is {ind.rsi14:.1f}"
            if ind.macd_hist is not None:
                text += f" and the MACD histogram is {ind.macd_hist:.2f}"
            out.append(text + ".")
        if ind.atr14 is not None:
            out.append(
                f"ATR(14) is {_usd(ind.atr14)}, {_pct(ind.atr14 / r.last * 100.0)} of the price."
            )
    votes = [*r.trend, *r.momentum, *r.context]
    ups = [v.reason for v in votes if v.score > 0]
    downs = [v.reason for v in votes if v.score < 0]
    if ups:
        out.append("For: " + "; ".join(ups) + ".")
    if downs:
        out.append("Against: " + "; ".join(downs) + ".")
    out.append(
        f"Taken together the read is {r.stance.value}, "
        f"at a confidence of {r.confidence} out of 100."
    )
    if r.penalties:
        out.append("Confidence is lower because " + "; ".join(r.penalties) + ".")
    if r.supports:
        out.append(
            "Nearest support: "
            + "; ".join(f"{lv.basis} at {_usd(lv.price)}" for lv in r.supports)
            + "."
        )
    if r.resistances:
        out.append(
            "Nearest resistance: "
            + "; ".join(f"{lv.basis} at {_usd(lv.price)}" for lv in r.resistances)
            + "."
        )
    out.extend(_idea_prose(r))
    out.extend(_position_prose(s, r))
    out.extend(_context_prose(s, r))
    return " ".join(out)


def _idea_prose(r: Reading) -> list[str]:
    idea = r.idea
    if idea is None:
        if r.stance is not Stance.NEUTRAL:
            return [
                "No trade idea: the read is not strong enough or there is no ATR to size a stop."
            ]
        return ["No trade idea while the read is neutral."]
    risk = abs(idea.entry - idea.stop)
    return [
        f"Idea: {idea.side} with a limit at {_usd(idea.entry)}, a stop at {_usd(idea.stop)} "
        f"({_pct(risk / idea.entry * 100)} away, from the {r.atr_timeframe} ATR) and a target "
        f"at {_usd(idea.target)}, a reward/risk of {abs(idea.target - idea.entry) / risk:.1f}; "
        f"horizon: {idea.horizon}."
        + (f" It is invalidated by {idea.invalidation}." if idea.invalidation else "")
    ]


def _position_prose(s: SymbolSnapshot, r: Reading) -> list[str]:
    p = s.position
    if p is None:
        return []
    out = [
        f"You are {p.side} {_shares(p.qty)} shares at an average of {_usd(p.avg_entry_price)}, "
        f"worth {_money(abs(p.market_value))}, with an unrealized P&L of {_money(p.unrealized_pnl)}"
        + (
            f" ({_pct(s.position_risk.unrealized_pnl_pct)})."
            if s.position_risk is not None and s.position_risk.unrealized_pnl_pct is not None
            else "."
        )
    ]
    risk = s.position_risk
    if risk is not None and risk.protective_stop is not None and risk.loss_at_stop is not None:
        out.append(
            f"Your stop at {_usd(risk.protective_stop)} would realise {_money(risk.loss_at_stop)}."
        )
    else:
        out.append("No working stop order protects this position.")
    if risk is not None and risk.weight_pct is not None:
        out.append(f"It is {_pct(risk.weight_pct)} of your equity.")
    against = (p.side == "long" and r.stance is Stance.BEARISH) or (
        p.side == "short" and r.stance is Stance.BULLISH
    )
    if against:
        out.append("The read runs against your position.")
    return out


def _context_prose(s: SymbolSnapshot, r: Reading) -> list[str]:
    out: list[str] = []
    if s.orders:
        out.append(
            f"You have {len(s.orders)} open order{'s' if len(s.orders) != 1 else ''} in {s.symbol}."
        )
    levels = sorted({lv for a in s.alerts for lv in a.levels}, key=lambda lv: abs(lv - r.last))
    if levels:
        out.append(
            f"Your nearest alert level is {_usd(levels[0])}; the price is "
            f"{_distance(r.last, levels[0])} it."
        )
    prefs = s.preferences
    if prefs.style is not None or prefs.risk_tolerance is not None:
        said = [
            f"a {prefs.style.value} trading style" if prefs.style else "",
            f"a {prefs.risk_tolerance.value} risk tolerance" if prefs.risk_tolerance else "",
        ]
        out.append("Read for " + " and ".join(x for x in said if x) + ".")
    if s.news:
        count = len(s.news)
        out.append(
            f"There {'is' if count == 1 else 'are'} {count} recent "
            f"headline{'s' if count != 1 else ''}; the rule-based read does not weigh news."
        )
    out.extend(f"Note: {n}." for n in s.notes)
    return out


def assess_symbol(snapshot: SymbolSnapshot) -> Assessment:
    reading = read(snapshot)
    if reading is None:
        return Assessment(_symbol_prose(snapshot, None), Stance.NEUTRAL, 0, [], None)
    return Assessment(
        rationale=_symbol_prose(snapshot, reading),
        stance=reading.stance,
        confidence=reading.confidence,
        key_levels=key_levels(reading),
        trade_idea=reading.idea,
    )


def assess_portfolio(snapshot: PortfolioSnapshot) -> Assessment:
    """Per holding: its reading and its share of equity; overall: exposure, the stance
    weighted by market value (bullish when the weighted mean of +1/0/-1 per holding,
    signed by its side, is 1/3 or more), concentration above 25% and unprotected
    positions called out."""
    out = ["Rule-based portfolio review (no language model involved)."]
    account = snapshot.account
    exposure = snapshot.exposure
    if account is not None:
        out.append(f"Equity is {_money(account.equity)} with {_money(account.cash)} in cash.")
    text = f"Gross exposure is {_money(exposure.gross)} and net {_money(exposure.net)}"
    if exposure.gross_pct is not None and exposure.net_pct is not None:
        text += f" ({_pct(exposure.gross_pct)} and {_pct(exposure.net_pct)} of equity)"
    out.append(text + ".")
    if not snapshot.holdings:
        out.append("There are no open positions to review.")
    weighted = Decimal(0)
    total = Decimal(0)
    confidences: list[int] = []
    for h in snapshot.holdings:
        reading = read(h)
        p = h.position
        if p is None:
            continue
        stance = reading.stance if reading is not None else Stance.NEUTRAL
        line = f"{h.symbol}: {p.side} {_shares(p.qty)} shares, P&L {_money(p.unrealized_pnl)}"
        risk = h.position_risk
        if risk is not None and risk.weight_pct is not None:
            line += f", {_pct(risk.weight_pct)} of equity"
            if risk.weight_pct > 25:
                line += " (concentrated)"
        line += f"; read {stance.value}"
        if reading is not None:
            # In words: a holding's own confidence is not a figure of the review.
            line += f" ({_strength(reading.confidence)})"
            confidences.append(reading.confidence)
        if risk is None or risk.protective_stop is None:
            line += "; no protective stop"
        out.append(line + ".")
        direction = {Stance.BULLISH: 1, Stance.NEUTRAL: 0, Stance.BEARISH: -1}[stance]
        side = 1 if p.side == "long" else -1
        weighted += direction * side * abs(p.market_value)
        total += abs(p.market_value)
    mean = weighted / total if total else Decimal(0)
    stance = (
        Stance.BULLISH
        if mean >= Decimal(1) / 3
        else Stance.BEARISH
        if mean <= -Decimal(1) / 3
        else Stance.NEUTRAL
    )
    confidence = sum(confidences) // len(confidences) if confidences else 0
    out.append(
        f"Weighted by market value, the holdings' reads lean {stance.value}"
        + (f", at an average confidence of {confidence} out of 100." if confidences else ".")
    )
    out.extend(f"Note: {n}." for n in snapshot.notes)
    return Assessment(" ".join(out), stance, confidence, [], None)


def _strength(confidence: int) -> str:
    return "strong" if confidence >= 65 else "moderate" if confidence >= 50 else "weak"


def deltas(text: str, size: int = DELTA_CHARS) -> list[str]:
    """``text`` in pieces of about ``size`` characters, cut after a space; joined they
    give ``text`` back exactly."""
    out: list[str] = []
    start = 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            space = text.rfind(" ", start + 1, end)
            if space > start:
                end = space + 1
        out.append(text[start:end])
        start = end
    return out


class OfflineAnalyst:
    """The rule-based analyst behind the ``Analyst`` port."""

    label = LABEL

    async def analyze(self, request: AnalysisRequest) -> AsyncGenerator[AnalystChunk, None]:
        snapshot = request.snapshot
        assessment = (
            assess_symbol(snapshot)
            if isinstance(snapshot, SymbolSnapshot)
            else assess_portfolio(snapshot)
        )
        for piece in deltas(assessment.rationale):
            yield TextDelta(piece)
        yield assessment
        yield Usage()
