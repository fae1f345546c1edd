"""From a trade idea to the bracket order the order service takes, and its size.

``bracket_order`` gives the request mapping of the trading API (the shape
``server.trading.validation.parse_order`` accepts): a limit entry for the day with a
take-profit limit and a stop-loss stop, every number a decimal string::

    {"symbol": "NVDA", "side": "buy", "type": "limit", "timeInForce": "day",
     "qty": "12", "limitPrice": "223.80", "orderClass": "bracket",
     "takeProfit": {"limitPrice": "230.20"}, "stopLoss": {"stopPrice": "220.60"}}

Prices are put on the order tick (Reg NMS Rule 612: $0.01 at or above $1, $0.0001
below), the entry to the nearest tick, the exits away from the entry (a stop never
ends up closer than the analyst set it), and the order of the three prices is checked
again after rounding. The order still goes through every risk check of the order
service, and the user confirms it: nothing trades by itself.

``suggested_qty`` sizes the idea by the caller's risk tolerance: the loss at the stop
is at most ``RISK_PER_TRADE`` of equity, and the position's value at most
``MAX_POSITION_SHARE`` of it, in whole shares.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

from server.analysis.errors import IdeaNotActionable
from server.analysis.result import TradeIdea
from server.analysis.snapshot import RiskTolerance

_CENT = Decimal("0.01")
_SUB_PENNY = Decimal("0.0001")

#: Equity risked per trade (loss at the stop), by risk tolerance.
RISK_PER_TRADE: dict[RiskTolerance, Decimal] = {
    RiskTolerance.LOW: Decimal("0.005"),
    RiskTolerance.MEDIUM: Decimal("0.01"),
    RiskTolerance.HIGH: Decimal("0.02"),
}
#: Most of the equity one idea may put into a position.
MAX_POSITION_SHARE: dict[RiskTolerance, Decimal] = {
    RiskTolerance.LOW: Decimal("0.10"),
    RiskTolerance.MEDIUM: Decimal("0.20"),
    RiskTolerance.HIGH: Decimal("0.30"),
}


def tick(price: Decimal) -> Decimal:
    return _CENT if price >= 1 else _SUB_PENNY


def to_tick(price: Decimal, rounding: str = ROUND_HALF_EVEN) -> Decimal:
    """``price`` on its Rule 612 increment."""
    return price.quantize(tick(price), rounding=rounding)


def _decimal_text(value: Decimal) -> str:
    return format(value, "f")


def bracket_order(symbol: str, idea: TradeIdea, qty: Decimal) -> dict[str, object]:
    """The bracket order request for ``idea``; ``IdeaNotActionable`` if it cannot be one."""
    if not qty.is_finite() or qty <= 0 or qty != qty.to_integral_value():
        raise IdeaNotActionable(f"a bracket order needs a whole, positive quantity, not {qty}")
    buy = idea.side == "buy"
    entry = to_tick(idea.entry)
    # Exits rounded away from the entry: the stop no tighter, the target no nearer.
    stop = to_tick(idea.stop, ROUND_FLOOR if buy else ROUND_CEILING)
    target = to_tick(idea.target, ROUND_CEILING if buy else ROUND_FLOOR)
    ordered = stop < entry < target if buy else target < entry < stop
    if not ordered:
        raise IdeaNotActionable(
            f"on the order tick the idea's stop {stop}, entry {entry} and target {target} "
            f"are not in order for a {idea.side}"
        )
    return {
        "symbol": symbol,
        "side": idea.side,
        "type": "limit",
        "timeInForce": "day",
        "qty": _decimal_text(qty.normalize()),
        "limitPrice": _decimal_text(entry),
        "orderClass": "bracket",
        "takeProfit": {"limitPrice": _decimal_text(target)},
        "stopLoss": {"stopPrice": _decimal_text(stop)},
    }


def suggested_qty(
    idea: TradeIdea, equity: Decimal, tolerance: RiskTolerance | None
) -> Decimal | None:
    """Whole shares such that the loss at the stop and the position's value stay within
    the tolerance's limits (medium when unstated); ``None`` when not even one share fits."""
    level = tolerance or RiskTolerance.MEDIUM
    risk_per_share = abs(idea.entry - idea.stop)
    if equity <= 0 or risk_per_share <= 0 or idea.entry <= 0:
        return None
    by_risk = equity * RISK_PER_TRADE[level] / risk_per_share
    by_value = equity * MAX_POSITION_SHARE[level] / idea.entry
    qty = min(by_risk, by_value).to_integral_value(rounding=ROUND_FLOOR)
    return qty if qty >= 1 else None
