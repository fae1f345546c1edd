"""Finding figures in prose, and the matching rule, with property tests."""

from __future__ import annotations

import math
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from server.analysis.check import is_known, matches
from server.analysis.figures import Unit, extract
from server.analysis.known import FigureSet


def texts(prose: str) -> list[str]:
    return [f.text for f in extract(prose)]


def test_prices_percentages_and_plain_numbers_with_their_precision() -> None:
    found = extract("NVDA at $223.8, up 2.3% (-$1.20) on 1.2M shares; RSI of 61.")
    assert [(f.text, f.value, f.unit, f.ulp) for f in found] == [
        ("$223.8", Decimal("223.8"), Unit.DOLLAR, Decimal("0.1")),
        ("2.3%", Decimal("2.3"), Unit.PERCENT, Decimal("0.1")),
        ("-$1.20", Decimal("1.20"), Unit.DOLLAR, Decimal("0.01")),
        ("1.2M", Decimal("1200000.0"), Unit.PLAIN, Decimal("100000.0")),
        ("61", Decimal("61"), Unit.PLAIN, Decimal("1")),
    ]


def test_offsets_point_at_the_figure() -> None:
    prose = "Support at $99.50 and resistance at $104.25."
    for figure in extract(prose):
        assert prose[figure.offset : figure.offset + len(figure.text)] == figure.text


@pytest.mark.parametrize(
    "prose",
    [
        "RSI(14) and MACD(12,26,9) and Bollinger (20, 2)",
        "the 20-day SMA, the 50-day, 14 bars, 3 sessions, 200 day average",
        "EMA 20, SMA-50, RSI 14, ATR 14, SMA200",
        "a 2x ATR stop, 1.5× risk, 2R target, 2:1 reward/risk, 2 standard deviations",
        "at 15:30 ET on June 5, 2024, on 2024-06-05, on 5 Jun",
        "the 3rd test, Q3 earnings, 5m and 1h bars, S&P500",
        "1. first\n2) second",
        "confidence 62 out of 100, or 62/100",
        "since 2023",
    ],
)
def test_numbers_that_are_not_market_figures_are_left_out(prose: str) -> None:
    # Only "62" (a confidence) survives in the scale case.
    found = texts(prose)
    assert found in ([], ["62", "62"]), found


def test_commas_and_magnitudes() -> None:
    found = extract("volume 1,234,567 vs 45k and $3.1B, 2 million")
    assert [(f.value, f.ulp) for f in found] == [
        (Decimal(1234567), Decimal(1)),
        (Decimal(45000), Decimal(1000)),
        (Decimal("3100000000.0"), Decimal("100000000.0")),
        (Decimal(2000000), Decimal(1000000)),
    ]


@pytest.mark.parametrize(
    ("stated", "ulp", "value", "ok"),
    [
        (223.8, 0.1, 223.82, True),  # rounded
        (223.8, 0.1, 223.75, True),  # rounded up at the tie
        (223.8, 0.1, 223.86, True),  # truncated
        (223.8, 0.1, 223.9, False),
        (223.8, 0.1, 223.74, False),
        (61, 1, 61.4, True),
        (61, 1, 61.9, True),  # truncated
        (61, 1, 62.6, False),
        (2.3, 0.1, -2.31, True),  # signs are magnitudes
    ],
)
def test_matching_rule(stated: float, ulp: float, value: float, ok: bool) -> None:
    assert matches(stated, ulp, value) is ok


def _fmt(value: Decimal, decimals: int, rounding: str) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-decimals), rounding=rounding)


values = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(100_000), places=4)


@given(values, st.integers(0, 4), st.sampled_from([ROUND_HALF_UP, ROUND_DOWN]))
def test_a_value_matches_itself_rounded_or_truncated(
    value: Decimal, decimals: int, rounding: str
) -> None:
    written = _fmt(value, decimals, rounding)
    assume(written > 0)
    figure = extract(f"the price is ${written}")[0]
    assert figure.value == written
    assert figure.ulp == Decimal(1).scaleb(-decimals)
    known = FigureSet(dollars=[float(value)])
    assert is_known(figure, known)


@given(values, st.integers(0, 4), st.integers(2, 1000))
def test_a_value_more_than_one_unit_away_does_not_match(
    value: Decimal, decimals: int, units_away: int
) -> None:
    ulp = Decimal(1).scaleb(-decimals)
    written = _fmt(value, decimals, ROUND_HALF_UP)
    figure = extract(f"the price is ${written}")[0]
    for other in (written + units_away * ulp, written - units_away * ulp):
        if other > 0:
            assert not is_known(figure, FigureSet(dollars=[float(other)]))


@given(values)
def test_units_are_kept_apart(value: Decimal) -> None:
    known = FigureSet(percents=[float(value)])
    assert is_known(extract(f"up {value}%")[0], known)
    assert not is_known(extract(f"at ${value}")[0], known)
    assert is_known(extract(f"at {value} now")[0], known)  # plain matches any unit


@given(st.lists(st.floats(0.01, 1e6), min_size=1, max_size=50), st.data())
def test_the_sorted_search_agrees_with_a_scan(pool: list[float], data: st.DataObject) -> None:
    target = data.draw(st.sampled_from(pool))
    decimals = data.draw(st.integers(0, 3))
    written = round(target, decimals)
    assume(written > 0 and math.isfinite(written))
    figure = extract(f"${written:.{decimals}f}")[0]
    scan = any(matches(float(figure.value), float(figure.ulp), v) for v in pool)
    assert is_known(figure, FigureSet(dollars=sorted(pool))) is scan
