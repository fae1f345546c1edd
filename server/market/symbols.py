"""Ticker symbol syntax: the one place that says what a symbol looks like."""

from __future__ import annotations

import re

#: Upper-case letter first, then up to nine letters, digits, dots or dashes (BRK.B, BF-B).
SYMBOL_PATTERN = re.compile(r"^[A-Z][A-Z0-9.\-]{0,9}$")


def is_valid_symbol(symbol: str) -> bool:
    return SYMBOL_PATTERN.fullmatch(symbol) is not None
