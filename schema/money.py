"""The ``Decimal`` scalar: money and quantities as exact decimal strings, never floats.

Output is the value in plain notation (no exponent), with the scale the domain gave
it: ``"0.0001"``, ``"1500"``, ``"-12.50"``, ``"1500.00"`` (cash is held to the cent).
Negative zero is written ``"0"``. A float handed to it is refused (a bug: floats never
carry money), as is a non-finite decimal.

Input is parsed exactly, from:

- a **string** (``"10.25"``, ``"-3"``, ``".5"``, ``"1e-4"``): ASCII digits, an optional
  sign, point and exponent; no spaces, underscores, ``NaN`` or ``Infinity``;
- a **number literal** in the document (``limitPrice: 10.25``): taken by its text, as
  written, never through a float;
- a **JSON number** in the variables. The HTTP and WebSocket layers decode JSON with
  orjson, which makes every non-integer (and every integer past 64 bits) a binary
  float, so the text the client sent is gone. An integer is exact. A float is taken by
  the value of its shortest round-trip text (``repr``, trailing zeros dropped: its
  scale is unknown). Every decimal of at most 15 significant digits comes back as the
  value written (15 is the most that every double round-trips), so a float whose
  shortest text needs more is refused: what the client wrote cannot be known. A number
  written with more than 15 digits may also decode to the same float as a shorter one
  and is then taken as that one: send such values as strings.

Every input must be finite, with at most ``MAX_DIGITS`` significant digits, below
``10**MAX_INTEGER_DIGITS`` in magnitude and with at most ``MAX_PLACES`` decimal places,
as written (``"1.000"`` has 3). Booleans, lists, objects and enum values are refused.
The parsed value keeps its scale (``"1.50"`` is ``Decimal("1.50")``), except that a
positive exponent is written out (``"1e3"`` is ``Decimal("1000")``). What a value may
be (positive, on the tick, in cents) is the domain's to decide
(``server.trading.validation``), with its own codes.

A refusal is a GraphQL error: ``GRAPHQL_VALIDATION_FAILED`` for a literal in the
document, ``BAD_USER_INPUT`` for a variable, its message saying what was wrong.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any

import strawberry
from graphql import FloatValueNode, IntValueNode, StringValueNode, ValueNode
from strawberry.types.scalar import ScalarDefinition

#: ``Decimal``'s default precision: what a client can reasonably mean.
MAX_DIGITS = 28
#: Magnitude below 10**20 (no amount of money or shares is near it).
MAX_INTEGER_DIGITS = 20
#: Finer than any price (4), quantity (9) or ratio (10) the server uses.
MAX_PLACES = 18
#: The most significant digits every double round-trips through text (DBL_DIG).
FLOAT_DIGITS = 15
#: Longer text is refused before it is parsed.
MAX_TEXT = 64

_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?")
_NOT_FINITE = frozenset({"nan", "snan", "inf", "infinity"})
_ONE = Decimal(1)
_LITERAL_KINDS = {
    "BooleanValueNode": "a boolean",
    "EnumValueNode": "an enum value",
    "ListValueNode": "a list",
    "ObjectValueNode": "an object",
    "NullValueNode": "null",
}


class InvalidDecimal(ValueError):
    """A value the ``Decimal`` scalar refuses; the message says why."""


def _show(value: object) -> str:
    text = value if isinstance(value, str) else repr(value)
    return repr(text[:32] + "...") if len(text) > 32 else repr(text)


def _checked(d: Decimal, shown: str) -> Decimal:
    """``d`` within the limits, with a positive exponent written out, without ``-0``."""
    sign, digits, exponent = d.as_tuple()
    assert isinstance(exponent, int)  # finite: the callers checked
    significant = len(digits) if any(digits) else 1
    if significant > MAX_DIGITS:
        raise InvalidDecimal(
            f"Decimal {shown} has {significant} significant digits; at most {MAX_DIGITS}"
        )
    if d and d.adjusted() >= MAX_INTEGER_DIGITS:
        raise InvalidDecimal(
            f"Decimal {shown} is too large: its magnitude must be below 1e{MAX_INTEGER_DIGITS}"
        )
    if -exponent > MAX_PLACES:
        raise InvalidDecimal(
            f"Decimal {shown} has {-exponent} decimal places; at most {MAX_PLACES}"
        )
    if exponent > 0:
        d = d.quantize(_ONE)
    return d.copy_abs() if sign and not d else d


def parse_text(text: str) -> Decimal:
    """A decimal string (or a number literal's text), exactly."""
    if not text:
        raise InvalidDecimal("Decimal must not be an empty string")
    if text.strip().lstrip("+-").lower() in _NOT_FINITE:
        raise InvalidDecimal(f"Decimal must be a finite number, got {_show(text)}")
    if len(text) > MAX_TEXT or not _TEXT.fullmatch(text):
        raise InvalidDecimal(
            f'Decimal must be a decimal number such as "10.25" or "-0.0001", got {_show(text)}'
        )
    try:
        d = Decimal(text)
    except InvalidOperation:  # cannot happen for text the pattern admits; be loud anyway
        raise InvalidDecimal(f"Decimal: {_show(text)} is not a number") from None
    return _checked(d, _show(text))


def _parse_float(value: float) -> Decimal:
    if not math.isfinite(value):
        raise InvalidDecimal(f"Decimal must be a finite number, got {value!r}")
    text = repr(value)
    # The float's value, without the ".0" repr adds to whole numbers: its scale is not
    # what the client wrote (that text is gone), so none is made up.
    d = Decimal(text).normalize()
    if len(d.as_tuple().digits) > FLOAT_DIGITS:
        raise InvalidDecimal(
            f"Decimal: the JSON number {text} has more than {FLOAT_DIGITS} significant "
            "digits, more than a JSON number carries exactly; send exact values as strings"
        )
    return _checked(d, text)


def parse_decimal(value: object) -> Decimal:
    """A variable's value (decoded JSON, or a Python value from a caller) as a Decimal."""
    if isinstance(value, bool):
        raise InvalidDecimal(f"Decimal must be a number or a decimal string, got {value!r}")
    if isinstance(value, str):
        return parse_text(value)
    if isinstance(value, int):
        if value.bit_length() > 100:  # far past the limits; do not format a huge int
            raise InvalidDecimal("Decimal is too large")
        return _checked(Decimal(value), str(value))
    if isinstance(value, float):
        return _parse_float(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise InvalidDecimal(f"Decimal must be a finite number, got {value}")
        return _checked(value, _show(str(value)))
    raise InvalidDecimal(
        f"Decimal must be a number or a decimal string, got {type(value).__name__}"
    )


def parse_decimal_literal(node: ValueNode, _variables: dict[str, Any] | None = None) -> Decimal:
    """A literal in the document: a number by its text as written, or a string."""
    if isinstance(node, IntValueNode | FloatValueNode | StringValueNode):
        return parse_text(node.value)
    kind = _LITERAL_KINDS.get(type(node).__name__, "that literal")
    raise InvalidDecimal(f"Decimal must be a number or a decimal string, not {kind}")


def plain(value: Decimal) -> str:
    """``value`` in plain notation, exactly, with its scale; ``-0`` as ``0``."""
    if not value.is_finite():
        raise ValueError(f"not a finite decimal: {value}")
    if value.is_zero() and value.is_signed():
        value = value.copy_abs()
    return format(value, "f")


def serialize_decimal(value: object) -> str:
    if isinstance(value, Decimal):
        return plain(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    # A float here is a bug upstream: money never passes through binary floats.
    raise TypeError(f"Decimal fields take Decimal or int values, got {type(value).__name__}")


DECIMAL_DESCRIPTION = (
    "An exact decimal number: money, prices, quantities and ratios. Sent as a JSON "
    'string in plain notation, with the scale the server holds it at ("0.0001", '
    '"1500", "-12.50"), never a binary float and never with an exponent. Accepted as a '
    'string ("10.25", "-3", "1e-4") or a number: a number literal in the document is '
    "taken by its text as written; a JSON number in the variables must be an integer or "
    f"have at most {FLOAT_DIGITS} significant digits (JSON decoders turn other numbers "
    "into binary floats, so send exact values as strings). At most "
    f"{MAX_DIGITS} significant digits, {MAX_PLACES} decimal places, and a magnitude "
    f"below 1e{MAX_INTEGER_DIGITS}; no NaN or Infinity."
)

#: Registered for Python's ``decimal.Decimal`` (``schema.scalars.SCALARS``), replacing
#: strawberry's built-in ``Decimal`` scalar, which serialises with ``str`` (``"1E+2"``)
#: and parses ``"NaN"``, ``"Infinity"`` and float literals through ``float``.
DECIMAL: ScalarDefinition = strawberry.scalar(
    name="Decimal",
    description=DECIMAL_DESCRIPTION,
    serialize=serialize_decimal,
    parse_value=parse_decimal,
    parse_literal=parse_decimal_literal,
)

MONEY_SCALARS: dict[object, ScalarDefinition] = {Decimal: DECIMAL}

__all__ = [
    "DECIMAL",
    "MONEY_SCALARS",
    "InvalidDecimal",
    "parse_decimal",
    "parse_decimal_literal",
    "plain",
    "serialize_decimal",
]
