"""Finding the figures a piece of prose states about the market.

A figure is a number as written, with its unit and the precision it was written with:
"$223.8" is 223.8 dollars to 0.1, "61.4%" is 61.4 percent to 0.1, "1.2M" is 1,200,000
to 100,000, "RSI of 61" is a plain 61 to 1. Signs are dropped ("down 2.3%" and
"-2.3%" both state 2.3%): prose carries the direction in words as often as in signs.

Numbers that are not statements about the market are left out, by these rules:

- indicator parameters: a parenthesised list after an indicator name ("MACD(12,26,9)",
  "Bollinger (20, 2)"), or one of the usual periods (9, 12, 14, 20, 26, 50, 100, 200)
  directly after the name ("RSI 14", "EMA-20", "SMA 200");
- windows and counts of time: a number before a unit of time or of bars ("20-day",
  "14 bars", "3 sessions", "5m", "1h", "50 day");
- multipliers and ratios: "2x", "1.5x" (also with a multiplication sign), "2R",
  "2 standard deviations", "2 sigma" (or the Greek letter), "2:1";
- times, dates and years: "15:30", "2024-06-05", "June 5", "5 Jun", a bare 1990-2100;
- ordinals and list markers: "3rd", "1." or "2)" at the start of a line;
- the scale of a score: "out of 100", "/100";
- any other number glued to letters ("Q3", "S&P500", "4th").

Lower-case "m" after a number is minutes (a timeframe), never millions; millions are
"M", "mn" or "million" (likewise "K"/"k"/"thousand", "B"/"bn"/"billion").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum


class Unit(StrEnum):
    DOLLAR = "dollar"
    PERCENT = "percent"
    PLAIN = "plain"


@dataclass(frozen=True, slots=True)
class Stated:
    """One figure in the prose."""

    text: str
    offset: int
    #: The magnitude, multiplier applied (always >= 0).
    value: Decimal
    unit: Unit
    #: One unit in the last place written: 0.1 for "223.8", 100,000 for "1.2M".
    ulp: Decimal


_INDICATOR = (
    r"(?:EMA|SMA|WMA|RSI|ATR|MACD|ADX|OBV|VWAP|BBANDS|BB|Bollinger(?:\s+Bands?)?"
    r"|Donchian(?:\s+channels?)?|Stoch(?:astic)?)"
)
_PARAM_LIST = re.compile(
    _INDICATOR + r"\s*\(\s*\d+(?:\.\d+)?(?:\s*,\s*\d+(?:\.\d+)?)*\s*\)", re.IGNORECASE
)
_USUAL_PERIODS = r"(?:9|12|14|20|26|50|100|200)"
_BARE_PARAM = re.compile(_INDICATOR + r"[\s-]?" + _USUAL_PERIODS + r"(?![\d.,]*\d)", re.IGNORECASE)
_TIME = re.compile(r"\b\d{1,2}:\d{2}(?::\d{2})?(?:\s?[AaPp]\.?[Mm]\.?)?")
_RATIO = re.compile(r"\b\d+(?:\.\d+)?\s?:\s?\d+(?:\.\d+)?\b")
_ISO_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?Z?)?\b")
_MONTHS = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
    r"|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
)
_DATE_WORDS = re.compile(
    r"\b" + _MONTHS + r"\.?\s+\d{1,2}(?:st|nd|rd|th)?(?:,?\s+\d{4})?\b"
    r"|\b\d{1,2}(?:st|nd|rd|th)?\s+" + _MONTHS + r"\b",
    re.IGNORECASE,
)
_LIST_MARKER = re.compile(r"(?m)^\s*\d+[.)](?=\s)")
_SCALE = re.compile(r"(?:\bout\s+of\s+|/)100\b", re.IGNORECASE)

_MASKS = (_PARAM_LIST, _BARE_PARAM, _ISO_DATE, _TIME, _RATIO, _DATE_WORDS, _LIST_MARKER, _SCALE)

_NUMBER = re.compile(
    r"(?<![\w.,$])"
    r"(?P<sign>[-+\u2212])?(?P<dollar>\$)?(?P<sign2>[-\u2212])?"
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"(?P<tail>\s?(?:%|percent\b|pct\b|thousand\b|million\b|billion\b|mn\b|bn\b|[KMB]\b|k\b))?"
)

_MULTIPLIERS = {
    "k": Decimal(1_000),
    "K": Decimal(1_000),
    "thousand": Decimal(1_000),
    "M": Decimal(1_000_000),
    "mn": Decimal(1_000_000),
    "million": Decimal(1_000_000),
    "B": Decimal(1_000_000_000),
    "bn": Decimal(1_000_000_000),
    "billion": Decimal(1_000_000_000),
}

# After the number (and any unit already taken): words that make it a window of time
# or of bars, a multiplier, or a standard-deviation count.
_NOT_A_VALUE_AFTER = re.compile(
    r"\s?-?\s?(?:seconds?|secs?|minutes?|mins?|hours?|hrs?|days?|weeks?|months?|years?|"
    r"bars?|candles?|sessions?|periods?|trading\s+days?|standard\s+deviations?|std\.?|"
    r"sigmas?|σ)\b|x\b|×|R\b|σ",
    re.IGNORECASE,
)
_GLUED_LETTER = re.compile(r"[A-Za-z_]")


def _masked(text: str) -> str:
    """``text`` with every span that holds no market figure blanked (same length)."""
    chars = list(text)
    for pattern in _MASKS:
        for m in pattern.finditer(text):
            for i in range(m.start(), m.end()):
                chars[i] = " "
    return "".join(chars)


def _ulp(digits: str) -> Decimal:
    _, _, decimals = digits.partition(".")
    return Decimal(1).scaleb(-len(decimals))


def extract(text: str) -> list[Stated]:
    """Every figure in ``text`` that is a statement about the market, in order."""
    masked = _masked(text)
    out: list[Stated] = []
    for m in _NUMBER.finditer(masked):
        digits = m.group("num").replace(",", "")
        tail = (m.group("tail") or "").strip()
        after = masked[m.end() :]
        if not tail and after[:1] and _GLUED_LETTER.match(after[:1]):
            continue  # "3rd", "5m", "2R", "Q3"-like tokens
        if _NOT_A_VALUE_AFTER.match(after):
            continue
        value = Decimal(digits)
        ulp = _ulp(digits)
        unit = Unit.DOLLAR if m.group("dollar") else Unit.PLAIN
        if tail in ("%", "percent", "pct"):
            unit = Unit.PERCENT
        elif tail:
            factor = _MULTIPLIERS[tail]
            value *= factor
            ulp *= factor
        elif (
            unit is Unit.PLAIN
            and "." not in digits
            and "," not in m.group("num")
            and 1990 <= value <= 2100
        ):
            continue  # a year
        out.append(Stated(text[m.start() : m.end()].strip(), m.start(), value, unit, ulp))
    return out
