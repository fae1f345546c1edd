"""Money rules: exact decimals from user input and from feed floats, the Rule 612
increments, and cent bookkeeping."""

from __future__ import annotations

import math
import struct
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.trading.money import (
    NotADecimal,
    canonical_price,
    canonical_qty,
    cents,
    commission_cents,
    decimal_places,
    is_valid_order_price,
    notional,
    price_from_feed,
    price_increment,
    price_of_ticks,
    round_price,
    ticks_from_feed,
    ticks_of,
    to_decimal,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("12.5", Decimal("12.5")),
        ("-3", Decimal("-3")),
        (" 7.25 ", Decimal("7.25")),
        (".5", Decimal("0.5")),
        (10, Decimal(10)),
        (Decimal("1.10"), Decimal("1.10")),
        (0.1, Decimal("0.1")),  # a float by its shortest text, not its binary value
        (223.82, Decimal("223.82")),
    ],
)
def test_to_decimal_accepts_plain_numbers(value: object, expected: Decimal) -> None:
    assert to_decimal(value) == expected
    assert str(to_decimal(value)) == str(expected)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("NaN", "NOT_FINITE"),
        ("-Infinity", "NOT_FINITE"),
        ("inf", "NOT_FINITE"),
        (float("nan"), "NOT_FINITE"),
        (float("inf"), "NOT_FINITE"),
        (Decimal("NaN"), "NOT_FINITE"),
        (Decimal("-Infinity"), "NOT_FINITE"),
        ("1e3", "NOT_A_NUMBER"),  # no exponents
        ("1_000", "NOT_A_NUMBER"),  # Python's Decimal would take it; an API must not
        ("12,5", "NOT_A_NUMBER"),
        ("", "NOT_A_NUMBER"),
        ("0x10", "NOT_A_NUMBER"),
        (True, "NOT_A_NUMBER"),  # bool is an int in Python, never a quantity
        (None, "NOT_A_NUMBER"),
        ([1], "NOT_A_NUMBER"),
        ("9" * 30, "NOT_A_NUMBER"),
    ],
)
def test_to_decimal_refuses_everything_else(value: object, reason: str) -> None:
    with pytest.raises(NotADecimal) as info:
        to_decimal(value)
    assert info.value.reason == reason


def test_price_increments_follow_rule_612() -> None:
    assert price_increment(Decimal("1.00")) == Decimal("0.01")
    assert price_increment(Decimal("0.9999")) == Decimal("0.0001")
    assert is_valid_order_price(Decimal("1.01"))
    assert not is_valid_order_price(Decimal("1.015"))  # sub-penny at or above $1
    assert is_valid_order_price(Decimal("0.5123"))
    assert not is_valid_order_price(Decimal("0.51234"))
    assert not is_valid_order_price(Decimal("0"))
    assert not is_valid_order_price(Decimal("1000000.01"))


def test_round_price_stays_on_the_grid_across_one_dollar() -> None:
    assert round_price(Decimal("1.004"), up=False) == Decimal("1.00")
    assert round_price(Decimal("1.004"), up=True) == Decimal("1.01")
    assert round_price(Decimal("0.99995"), up=True) == Decimal("1.00")
    assert round_price(Decimal("0.99995"), up=False) == Decimal("0.9999")
    assert round_price(Decimal("223.829"), up=False) == Decimal("223.82")


def test_canonical_forms() -> None:
    assert str(canonical_price(Decimal("223.8200"))) == "223.82"
    assert str(canonical_price(Decimal("223.825"))) == "223.8250"  # a real midpoint print
    assert str(canonical_price(Decimal("0.5"))) == "0.5000"
    assert str(canonical_qty(Decimal("10.500"))) == "10.5"
    assert str(canonical_qty(Decimal("100"))) == "100"
    assert str(canonical_qty(Decimal("1E+2"))) == "100"
    assert decimal_places(Decimal("1.50")) == 1
    assert decimal_places(Decimal("100")) == 0


def test_cash_is_booked_to_the_cent_half_even_and_fees_half_up() -> None:
    assert notional(Decimal("3"), Decimal("0.3333")) == Decimal("1.00")
    assert cents(Decimal("0.125")) == Decimal("0.12")
    assert cents(Decimal("0.135")) == Decimal("0.14")
    assert commission_cents(Decimal("0.125")) == Decimal("0.13")
    # A fractional fill: 0.123456789 shares at $100.01.
    assert notional(Decimal("0.123456789"), Decimal("100.01")) == Decimal("12.35")


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf, -math.inf])
def test_feed_prices_that_are_not_prices(bad: float) -> None:
    assert ticks_from_feed(bad) == 0
    with pytest.raises(ValueError):
        price_from_feed(bad)


def test_feed_conversion_examples() -> None:
    assert price_from_feed(223.82) == Decimal("223.82")
    assert ticks_from_feed(223.82) == 2_238_200
    assert ticks_from_feed(0.1) == 1000
    # Halfway cases go to the decimal rule (half-even on the shortest text).
    assert price_from_feed(1.00005) == Decimal("1.0000")
    assert ticks_from_feed(1.00005) == 10_000
    assert price_from_feed(1.00015) == Decimal("1.0002")
    assert ticks_from_feed(1.00015) == 10_002


@given(st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False))
def test_fast_feed_conversion_equals_the_decimal_rule(x: float) -> None:
    assert ticks_from_feed(x) == ticks_of(price_from_feed(x))


@given(st.integers(min_value=1, max_value=10**10), st.integers(min_value=0, max_value=9))
def test_fast_feed_conversion_on_decimal_texts(ticks: int, extra: int) -> None:
    # Prices as a feed writes them, with up to 5 decimals (halfway cases included).
    text = f"{ticks // 10}.{ticks % 10}{extra}" if ticks >= 10 else f"0.000{ticks}{extra}"
    x = float(text)
    assert ticks_from_feed(x) == ticks_of(price_from_feed(x))


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_fast_feed_conversion_on_any_bit_pattern(bits: int) -> None:
    x = struct.unpack("<d", struct.pack("<Q", bits))[0]
    if math.isfinite(x) and 0 < x <= 1e9:
        assert ticks_from_feed(x) == ticks_of(price_from_feed(x))
    elif not (math.isfinite(x) and x > 0):
        assert ticks_from_feed(x) == 0


@given(st.integers(min_value=1, max_value=10**10))
def test_ticks_round_trip(ticks: int) -> None:
    assert ticks_of(price_of_ticks(ticks)) == ticks
