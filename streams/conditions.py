"""Which trades count for what: the consolidated tape's sale-condition rules.

A print on the consolidated tape carries sale conditions (Polygon's ``c``: numeric ids,
Polygon's own numbering, ``/v3/reference/conditions``). The CTA and UTP plans (and
FINRA for TRF prints) say, per condition, whether a print with it may update the
consolidated **high/low**, the consolidated **last** (and so the open and close), and
the consolidated **volume**. Polygon publishes the same table as each condition's
``update_rules.consolidated`` (``updates_high_low``, ``updates_open_close``,
``updates_volume``); this module is that table, for the trade conditions.

How it is applied (here, once per trade, as flags):

* A print with several conditions updates a field only if *every* condition allows
  it, as the plans specify (an odd-lot intermarket sweep, ``[14, 37]``, counts for
  volume only).
* A print with no conditions (``c`` absent or empty) is a regular sale: everything.
* A condition id not in the table (a new one, or one of Polygon's indicator ids that
  are not sale conditions, such as the short-sale-restriction and financial-status
  ids 57-71) restricts nothing: an unknown vocabulary must never hide real trades.
* Every condition that updates the last price also updates high/low in the plans'
  tables, so ``LAST`` implies ``HIGH_LOW`` (the bar and day logic rely on it).
* A print of size 0 updates nothing (``flags_for`` is not told the size; the caller
  checks it): size-0 prints are markers, such as the official open and close.

Legacy ids that Polygon lists but that no longer appear on the tape (held, cancelled,
errored, corrections, "as of" reports) are treated as updating nothing: if one ever
shows up, leaving it out of bars is the conservative choice. This is our decision, not
a rule of the plans, and ``docs/market-data.md`` says so.

Pure: no I/O.
"""

from __future__ import annotations

from typing import Final

#: The print may set the high and the low.
HIGH_LOW: Final = 1
#: The print may set the last price, and therefore the open and the close.
LAST: Final = 2
#: The print counts towards volume (and the trade-weighted VWAP).
VOLUME: Final = 4
#: A regular sale.
ALL: Final = HIGH_LOW | LAST | VOLUME
NONE: Final = 0

_HLV: Final = HIGH_LOW | LAST | VOLUME
_H_V: Final = HIGH_LOW | VOLUME
_V: Final = VOLUME
_HL_: Final = HIGH_LOW | LAST

#: Polygon condition id -> (name, consolidated update flags).
TRADE_CONDITIONS: Final[dict[int, tuple[str, int]]] = {
    0: ("Regular Sale", _HLV),
    1: ("Acquisition", _HLV),
    2: ("Average Price Trade", _V),
    3: ("Automatic Execution", _HLV),
    4: ("Bunched Trade", _HLV),
    5: ("Bunched Sold Trade", _H_V),
    6: ("CAP Election", _HLV),
    7: ("Cash Sale", _V),
    8: ("Closing Prints", _HLV),
    9: ("Cross Trade", _HLV),
    10: ("Derivatively Priced", _H_V),
    11: ("Distribution", _HLV),
    12: ("Form T / Extended Hours", _V),
    13: ("Extended Hours (Sold Out Of Sequence)", _V),
    14: ("Intermarket Sweep", _HLV),
    15: ("Market Center Official Close", NONE),
    16: ("Market Center Official Open", NONE),
    17: ("Market Center Opening Trade", _HLV),
    18: ("Market Center Reopening Trade", _HLV),
    19: ("Market Center Closing Trade", _HLV),
    20: ("Next Day", _V),
    21: ("Price Variation Trade", _V),
    22: ("Prior Reference Price", _H_V),
    23: ("Rule 155 Trade (AMEX)", _HLV),
    24: ("Rule 127 (NYSE)", _HLV),
    25: ("Opening Prints", _HLV),
    27: ("Stopped Stock (Regular Trade)", _HLV),
    28: ("Re-Opening Prints", _HLV),
    29: ("Seller", _H_V),
    30: ("Sold Last", _HLV),
    31: ("Sold Last and Stopped Stock", _HLV),
    32: ("Sold (Out Of Sequence)", _H_V),
    33: ("Sold (Out Of Sequence) and Stopped Stock", _H_V),
    34: ("Split Trade", _HLV),
    35: ("Stock Option", _HLV),
    36: ("Yellow Flag Regular Trade", _HLV),
    37: ("Odd Lot Trade", _V),
    38: ("Corrected Consolidated Close (per listing market)", _HL_),
    41: ("Trade Thru Exempt", _HLV),
    52: ("Contingent Trade", _V),
    53: ("Qualified Contingent Trade", _V),
    55: ("Opening Reopening Trade Detail", _HLV),
    # Legacy ids (see the module docstring): conservatively, nothing.
    40: ("Held", NONE),
    42: ("Non-Eligible", NONE),
    43: ("Non-Eligible Extended", NONE),
    44: ("Cancelled", NONE),
    45: ("Recovery", NONE),
    46: ("Correction", NONE),
    47: ("As Of", NONE),
    48: ("As Of Correction", NONE),
    49: ("As Of Cancel", NONE),
    50: ("OOB", NONE),
    51: ("Summary", NONE),
    54: ("Errored", NONE),
}

_cache: dict[tuple[int, ...], int] = {}
_CACHE_MAX: Final = 4096


def flags_for(conditions: tuple[int, ...]) -> int:
    """The update flags of a print with these sale conditions (``ALL`` for none)."""
    if not conditions:
        return ALL
    found = _cache.get(conditions)
    if found is not None:
        return found
    flags = ALL
    for code in conditions:
        rule = TRADE_CONDITIONS.get(code)
        if rule is not None:
            flags &= rule[1]
    if not flags & HIGH_LOW:
        flags &= ~LAST  # LAST implies HIGH_LOW (see the module docstring)
    if len(_cache) >= _CACHE_MAX:
        _cache.clear()  # the combinations seen in practice are a few dozen
    _cache[conditions] = flags
    return flags


def describe(flags: int) -> str:
    """``"high/low, last, volume"``-style text for logs and docs."""
    parts = [
        name
        for bit, name in ((HIGH_LOW, "high/low"), (LAST, "last"), (VOLUME, "volume"))
        if flags & bit
    ]
    return ", ".join(parts) or "nothing"


__all__ = ["ALL", "HIGH_LOW", "LAST", "NONE", "TRADE_CONDITIONS", "VOLUME", "describe", "flags_for"]
