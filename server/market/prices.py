"""Prices derived from the feed's prices, at the feed's precision.

Binary floats hold few decimal prices exactly, so arithmetic on them shows noise:
(229.45 + 229.46) / 2 is 229.45499999999998 and 229.46 - 229.45 is
0.010000000000019327. US equities are quoted in at most four decimals (a hundredth of
a cent, below $1; cents above), so a spread is exact at four decimals and a mid at
five: rounding to those gives the exact decimal value as the nearest float (229.455,
0.01), which also makes ties compare as they should (a mid exactly at an alert's level
is not below it). Averages (VWAP) are kept at four decimals, as Polygon gives them.
"""

from __future__ import annotations

from decimal import Decimal

#: Decimals of the feed's prices (Polygon stocks: $0.0001 increments at most).
PRICE_DECIMALS = 4
_TICKS = float(10**PRICE_DECIMALS)
#: A mid's unit is a tenth of a tick (0.00001): (bid + ask) / 2 in those units.
_MID_UNITS = 10.0 * _TICKS
_HALF_MID_UNITS = _MID_UNITS / 2.0
#: Adding and subtracting 1.5 * 2**52 rounds a float to the nearest integer within
#: float arithmetic (the sum has no bits below 1), which costs a fraction of round().
_ROUNDER = 6755399441055744.0
#: Below this many units the float error of bid + ask, scaled, stays far under half a
#: unit, so the nearest integer is the exact one (sums up to about $20 million).
_EXACT_BELOW = 2.0**40
_TICK = Decimal(1).scaleb(-PRICE_DECIMALS)
_MID_UNIT = Decimal(1).scaleb(-PRICE_DECIMALS - 1)


def mid_price(bid: float, ask: float) -> float:
    """(bid + ask) / 2, exact: one decimal more than the prices.

    In units of 0.00001 the mid is a whole number; dividing it back gives the float
    nearest to the exact decimal value. This runs for every quote in the alert engine,
    so it avoids round(x, 5), which formats the number as text; only sums too large
    for the float trick (millions of dollars) take the decimal way.
    """
    units = (bid + ask) * _HALF_MID_UNITS
    if -_EXACT_BELOW < units < _EXACT_BELOW:
        return (units + _ROUNDER - _ROUNDER) / _MID_UNITS
    return float(((_decimal(bid) + _decimal(ask)) / 2).quantize(_MID_UNIT))


def spread(bid: float, ask: float) -> float:
    ticks = (ask - bid) * _TICKS
    if -_EXACT_BELOW < ticks < _EXACT_BELOW and abs(bid) < _EXACT_BELOW / _TICKS:
        return (ticks + _ROUNDER - _ROUNDER) / _TICKS
    return float((_decimal(ask) - _decimal(bid)).quantize(_TICK))


def _decimal(price: float) -> Decimal:
    return Decimal(repr(price))


def average_price(value: float) -> float:
    """A computed average price (VWAP) at the feed's precision."""
    return round(value, PRICE_DECIMALS)
