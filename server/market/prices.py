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

#: Decimals of the feed's prices (Polygon stocks: $0.0001 increments at most).
PRICE_DECIMALS = 4


def mid_price(bid: float, ask: float) -> float:
    """(bid + ask) / 2, exact: one decimal more than the prices."""
    return round((bid + ask) / 2.0, PRICE_DECIMALS + 1)


def spread(bid: float, ask: float) -> float:
    return round(ask - bid, PRICE_DECIMALS)


def average_price(value: float) -> float:
    """A computed average price (VWAP) at the feed's precision."""
    return round(value, PRICE_DECIMALS)
