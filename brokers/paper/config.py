"""The paper broker's settings: fees, slippage, calendar, GTC lifetime."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from server.trading.calendar import NYSE, Calendar
from server.trading.model import Side
from server.trading.money import CTX, ZERO, commission_cents


@dataclass(frozen=True, slots=True)
class Commission:
    """Fees per fill, in dollars, rounded half-up to the cent.

    ``per_share`` * qty + ``rate`` * notional + ``sell_rate`` * notional on sells (the
    SEC fee is of this kind: $27.80 per million sold since May 2024) + ``per_order`` on
    an order's first fill. All zero by default, like Alpaca's commission-free
    equities (which pass the regulatory fees through).
    """

    per_share: Decimal = ZERO
    per_order: Decimal = ZERO
    rate: Decimal = ZERO
    sell_rate: Decimal = ZERO

    def __post_init__(self) -> None:
        if min(self.per_share, self.per_order, self.rate, self.sell_rate) < 0:
            raise ValueError("commission terms must not be negative")

    @property
    def free(self) -> bool:
        return not (self.per_share or self.per_order or self.rate or self.sell_rate)

    def of(self, side: Side, qty: Decimal, price: Decimal, first: bool) -> Decimal:
        if self.free:
            return ZERO
        value = CTX.multiply(qty, price)
        fee = self.per_share * qty + self.rate * value
        if side is Side.SELL:
            fee += self.sell_rate * value
        if first:
            fee += self.per_order
        return commission_cents(fee)


@dataclass(frozen=True, slots=True)
class PaperConfig:
    commission: Commission = field(default_factory=Commission)
    #: Market orders (and triggered stops) fill this many basis points worse than the
    #: quote, rounded away to the price increment. Limit prices are never passed.
    slippage_bps: int = 0
    calendar: Calendar = NYSE
    #: GTC orders expire at the close of the first session this many days after they
    #: were placed (Alpaca: 90). ``None``: never.
    gtc_max_age_days: int | None = 90

    def __post_init__(self) -> None:
        if not (0 <= self.slippage_bps <= 1000):
            raise ValueError("slippage_bps is between 0 and 1000")
        if self.gtc_max_age_days is not None and self.gtc_max_age_days < 1:
            raise ValueError("gtc_max_age_days is at least 1")
