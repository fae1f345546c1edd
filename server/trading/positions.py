"""A position in one symbol, from its fills alone.

Quantities are signed (long > 0, short < 0). ``cost_basis`` is signed the same way: what
was paid for a long position, minus what was received for a short one, to the cent.
Each fill's cash value is its notional booked to the cent (``money.notional``); a fill
that reduces a position takes out the cost of what it closes in proportion, to the cent
(the last close takes out exactly what is left, so a round trip's P&L is exact), and
realises the difference. A fill that crosses zero (long to short, or back) is split:
the part that closes, then the part that opens at the same price, their cash values
adding up to the fill's.

With these rules, for any sequence of fills and any marks::

    cash_delta == realized_pnl + unrealized_pnl - market_value   (per position)
    equity - starting_cash == realized + unrealized - commissions  (account)

exactly, to the cent (the tests check it on random fills).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from server.trading.events import Fill
from server.trading.model import Side
from server.trading.money import CTX, ZERO, canonical_price, cents, notional


class PositionSide(StrEnum):
    LONG = "long"
    SHORT = "short"


@dataclass(frozen=True, slots=True)
class Realization:
    """The closing part of one fill: ``qty`` shares (> 0) closed for ``pnl``."""

    qty: Decimal
    pnl: Decimal
    #: Average entry price of what was closed, and the fill's price.
    entry_price: Decimal
    exit_price: Decimal


@dataclass(frozen=True, slots=True)
class Position:
    symbol: str
    qty: Decimal = ZERO
    cost_basis: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    #: Fees of the fills in this symbol (not in ``realized_pnl``).
    commissions: Decimal = ZERO
    #: Time of the last fill (ms).
    updated_ms: int = 0

    @property
    def side(self) -> PositionSide | None:
        if self.qty > 0:
            return PositionSide.LONG
        if self.qty < 0:
            return PositionSide.SHORT
        return None

    @property
    def avg_entry_price(self) -> Decimal | None:
        """Cost per share of what is open; ``None`` when flat."""
        if not self.qty:
            return None
        return canonical_price(CTX.divide(self.cost_basis, self.qty))

    def market_value(self, mark: Decimal) -> Decimal:
        """Signed: negative for a short. To the cent."""
        return notional(self.qty, mark)

    def unrealized_pnl(self, mark: Decimal) -> Decimal:
        return self.market_value(mark) - self.cost_basis


def apply_fill(
    position: Position,
    side: Side,
    qty: Decimal,
    price: Decimal,
    *,
    commission: Decimal = ZERO,
    time_ms: int = 0,
) -> tuple[Position, Realization | None]:
    """The position after one fill, and what it realised (``None`` if nothing closed).

    The fill's cash effect on the account is ``-side.sign * notional(qty, price)``.
    """
    if qty <= 0:
        raise ValueError(f"fill quantity must be positive, got {qty}")
    signed = qty if side is Side.BUY else -qty
    value = notional(qty, price) * side.sign  # signed like the quantity
    held = position.qty
    realization = None
    cost = position.cost_basis
    realized = position.realized_pnl
    if held and (held > 0) != (signed > 0):
        closing = min(qty, abs(held))
        # Cash of the closing part; the opening part gets the rest of the fill's value.
        close_value = value if closing == qty else notional(closing, price) * side.sign
        if closing == abs(held):
            removed = cost
        else:
            removed = cents(CTX.divide(CTX.multiply(cost, closing), abs(held)))
        pnl = -(close_value + removed)
        closed_signed = closing if held > 0 else -closing
        entry = canonical_price(CTX.divide(removed, closed_signed))
        realization = Realization(closing, pnl, entry, price)
        cost -= removed
        realized += pnl
        held += closing * side.sign
        value -= close_value
        signed -= closing * side.sign
    new = Position(
        symbol=position.symbol,
        qty=held + signed,
        cost_basis=cost + value,
        realized_pnl=realized,
        commissions=position.commissions + commission,
        updated_ms=max(position.updated_ms, time_ms),
    )
    return new, realization


def book_fill(position: Position, fill: Fill) -> tuple[Position, Realization | None]:
    """``apply_fill`` with a broker's ``Fill``."""
    return apply_fill(
        position, fill.side, fill.qty, fill.price, commission=fill.commission, time_ms=fill.time_ms
    )
