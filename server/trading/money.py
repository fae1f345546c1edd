"""Money and quantities: exact decimals, the tick rules, and the one way a feed float
becomes a price.

Rules (docs/trading.md explains the sources):

- **Prices** are ``Decimal``. An order price of $1.00 or more moves in $0.01 increments,
  below $1.00 in $0.0001 (Reg NMS Rule 612, the sub-penny rule, as Alpaca enforces it
  on limit and stop prices). Execution prices may be finer than the order tick (a
  midpoint print at $223.825 is a real price); everything is held to $0.0001.
- **Feed prices** arrive as JSON floats. ``price_from_feed`` takes the shortest decimal
  that round-trips to the float (``repr``, which is the JSON text for any price with at
  most 15 significant digits) and rounds it half-even to $0.0001. ``ticks_from_feed`` is
  the same rule in integer ten-thousandths of a dollar for the matching engine's hot
  path; the two agree on every float (the fast path hands near-halfway cases to the
  decimal rule).
- **Quantities** are ``Decimal`` shares with at most 9 decimal places; whole shares
  unless the order may be fractional.
- **Cash, P&L and commissions** are booked in cents: the cash effect of a fill is its
  notional rounded half-even to $0.01 (what a broker books), commissions are rounded
  half-up to $0.01 (never under-charged by a rounding). Average prices are derived on
  display, never stored rounded.

Floats never touch money: every function here refuses them except the two ``*_from_feed``
conversions, which exist precisely to turn market-data floats into decimals once.
"""

from __future__ import annotations

import math
import re
from decimal import (
    ROUND_CEILING,
    ROUND_FLOOR,
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
)
from functools import lru_cache

#: Arithmetic for money: wide enough that no product of a valid quantity and price is
#: ever rounded by the context (9 + 4 decimals on 8 + 7 integer digits), and loud on
#: anything undefined. Use its methods (``CTX.multiply``); the global context is
#: never changed.
CTX = Context(prec=40, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow])

ZERO = Decimal(0)
ONE = Decimal(1)
CENT = Decimal("0.01")
#: The finest price: $0.0001.
PRICE_QUANTUM = Decimal("0.0001")
#: The finest quantity: one billionth of a share.
QTY_QUANTUM = Decimal("0.000000001")
#: Prices in the matching engine are integers of this many per dollar.
TICKS_PER_DOLLAR = 10_000

#: Bounds past which a value is a mistake, not an order (Berkshire A trades near
#: $700,000; no listed US equity trades near $1,000,000).
MAX_PRICE = Decimal(1_000_000)
MAX_QTY = Decimal(10_000_000)
MAX_NOTIONAL = Decimal(1_000_000_000)
#: Alpaca's smallest notional order.
MIN_NOTIONAL = Decimal(1)

_DECIMAL_TEXT = re.compile(r"^-?(?:\d{1,24}(?:\.\d{0,24})?|\.\d{1,24})$")


class NotADecimal(ValueError):
    """The value is not a plain decimal number (``reason`` says how)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def to_decimal(value: object) -> Decimal:
    """A user-supplied number as an exact ``Decimal``.

    Accepts ``Decimal``, ``int`` and decimal strings (``"12.5"``, ``"-3"``; no
    exponents, underscores or spaces: what a GraphQL decimal-string scalar carries).
    A ``float`` is taken by its shortest round-trip text (``repr``), so ``0.1`` is
    exactly ``Decimal("0.1")``. Raises ``NotADecimal`` with ``reason`` one of
    ``NOT_A_NUMBER`` and ``NOT_FINITE``.
    """
    if isinstance(value, bool):
        raise NotADecimal("NOT_A_NUMBER", f"expected a number, got {value!r}")
    if isinstance(value, Decimal):
        d = value
    elif isinstance(value, int):
        d = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise NotADecimal("NOT_FINITE", f"{value!r} is not a finite number")
        d = Decimal(repr(value))
    elif isinstance(value, str):
        text = value.strip()
        lowered = text.lower().lstrip("+-")
        if lowered in ("nan", "snan", "inf", "infinity"):
            raise NotADecimal("NOT_FINITE", f"{value[:32]!r} is not a finite number")
        if not _DECIMAL_TEXT.fullmatch(text):
            raise NotADecimal("NOT_A_NUMBER", f"{value[:32]!r} is not a decimal number")
        d = Decimal(text)
    else:
        raise NotADecimal("NOT_A_NUMBER", f"expected a decimal string, got {type(value).__name__}")
    if not d.is_finite():
        raise NotADecimal("NOT_FINITE", f"{value!r} is not a finite number")
    return d


def decimal_places(d: Decimal) -> int:
    """How many decimal places ``d`` needs (``Decimal("1.50")`` needs 1)."""
    exponent = d.normalize(CTX).as_tuple().exponent
    assert isinstance(exponent, int)  # finite: callers checked
    return max(0, -exponent)


def price_increment(price: Decimal) -> Decimal:
    """The order-price increment at ``price``: $0.01 from $1.00 up, $0.0001 below."""
    return CENT if price >= ONE else PRICE_QUANTUM


def is_valid_order_price(price: Decimal) -> bool:
    """Positive, at most MAX_PRICE, and on the increment of its range."""
    if not (ZERO < price <= MAX_PRICE):
        return False
    return price == price.quantize(price_increment(price), rounding=ROUND_FLOOR)


def round_price(price: Decimal, *, up: bool) -> Decimal:
    """``price`` on the order increment of its range, rounded up or down."""
    rounding = ROUND_CEILING if up else ROUND_FLOOR
    rounded = price.quantize(price_increment(price), rounding=rounding, context=CTX)
    # Rounding down across $1.00 lands in the sub-dollar range: re-round there.
    if rounded < ONE <= price or price < ONE <= rounded:
        rounded = price.quantize(PRICE_QUANTUM, rounding=rounding, context=CTX)
    return rounded


def canonical_price(price: Decimal) -> Decimal:
    """A price as displayed and stored: cents when it is whole cents and ≥ $1, else $0.0001."""
    p = price.quantize(PRICE_QUANTUM, rounding=ROUND_HALF_EVEN, context=CTX)
    if p >= ONE and p == p.quantize(CENT, rounding=ROUND_FLOOR):
        return p.quantize(CENT)
    return p


def canonical_qty(qty: Decimal) -> Decimal:
    """A quantity without trailing zeros past the decimal point (``Decimal("10")``,
    ``Decimal("2.5")``), to the finest quantity."""
    whole = int(qty)
    if whole == qty:  # the usual case, and cheap
        return Decimal(whole)
    return qty.quantize(QTY_QUANTUM, rounding=ROUND_FLOOR, context=CTX).normalize(CTX)


def price_from_feed(x: float) -> Decimal:
    """A market-data float as a price: ``Decimal(repr(x))`` rounded half-even to $0.0001.

    Raises ``ValueError`` for NaN, infinities, zero and negative prices.
    """
    if not (math.isfinite(x) and x > 0.0):
        raise ValueError(f"not a price: {x!r}")
    return Decimal(repr(x)).quantize(PRICE_QUANTUM, rounding=ROUND_HALF_EVEN, context=CTX)


def ticks_from_feed(x: float) -> int:
    """``price_from_feed(x)`` in ten-thousandths of a dollar, without building a Decimal.

    ``x * 10_000`` is within a few ulps of the true scaled value, so away from a half
    (where rounding could go either way) ``round`` gives exactly the decimal rule's
    answer; within 0.1 of a half the decimal rule decides. Returns 0 for a price
    that is not positive and finite (the caller's "no price").
    """
    if not (x > 0.0) or x == math.inf:  # NaN fails the first test
        return 0
    scaled = x * TICKS_PER_DOLLAR
    r = round(scaled)
    if abs(scaled - r) < 0.4:
        return r
    return int(price_from_feed(x) * TICKS_PER_DOLLAR)


def ticks_of(price: Decimal) -> int:
    """An exact price (at most 4 decimal places) in ten-thousandths of a dollar."""
    return int(price.scaleb(4, CTX).to_integral_value(rounding=ROUND_HALF_EVEN, context=CTX))


@lru_cache(maxsize=1 << 16)
def price_of_ticks(ticks: int) -> Decimal:
    """Ten-thousandths of a dollar as a canonical price (cached: fills repeat prices)."""
    return canonical_price(Decimal(ticks).scaleb(-4, CTX))


def cents(amount: Decimal) -> Decimal:
    """A cash amount booked to the cent, half-even (no systematic drift either way)."""
    return amount.quantize(CENT, rounding=ROUND_HALF_EVEN, context=CTX)


def commission_cents(amount: Decimal) -> Decimal:
    """A fee rounded half-up to the cent."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP, context=CTX)


def notional(qty: Decimal, price: Decimal) -> Decimal:
    """The cash value of ``qty`` at ``price``, booked to the cent."""
    return cents(CTX.multiply(qty, price))


def floor_qty(qty: Decimal) -> Decimal:
    """``qty`` rounded down to the finest quantity (never buy more than paid for)."""
    return qty.quantize(QTY_QUANTUM, rounding=ROUND_FLOOR, context=CTX)


def is_whole(qty: Decimal) -> bool:
    return qty == qty.to_integral_value()
