"""Derived prices carry no binary-float noise: they are exact at the feed's precision."""

from __future__ import annotations

import random
from decimal import Decimal

from server.market.prices import average_price, mid_price, spread


def test_the_mid_and_spread_of_a_cent_quote_are_exact() -> None:
    assert (229.45 + 229.46) / 2 == 229.45499999999998  # what plain arithmetic gives
    assert mid_price(229.45, 229.46) == 229.455
    assert repr(mid_price(229.45, 229.46)) == "229.455"
    assert spread(229.45, 229.46) == 0.01
    assert mid_price(229.29, 229.31) == 229.3


def test_random_quotes_give_the_decimal_answer() -> None:
    rng = random.Random(7)
    for _ in range(20_000):
        # Sub-penny quotes below $1, cents above, as US equities are quoted; prices
        # from pennies to about $11 million (both sides of the float trick's range).
        ticks = 10_000 if rng.random() < 0.2 else 100
        bid_units = rng.randrange(1, 10 ** rng.randrange(3, 10) * ticks // 100 + 2)
        ask_units = bid_units + rng.randrange(1, 50)
        bid, ask = bid_units / ticks, ask_units / ticks
        exact_mid = (Decimal(repr(bid)) + Decimal(repr(ask))) / 2
        exact_spread = Decimal(repr(ask)) - Decimal(repr(bid))
        assert Decimal(repr(mid_price(bid, ask))) == exact_mid, (bid, ask)
        assert Decimal(repr(spread(bid, ask))) == exact_spread, (bid, ask)


def test_an_average_price_keeps_four_decimals() -> None:
    assert average_price(229.45123456) == 229.4512


def test_prices_beyond_the_fast_rounding_range_are_still_right() -> None:
    # Past the float trick's range the decimal way takes over.
    bid, ask = 5e10, 5e10 + 0.02
    exact = (Decimal(repr(bid)) + Decimal(repr(ask))) / 2
    assert mid_price(bid, ask) == float(exact)
    assert spread(bid, ask) == 0.02
