"""Custom scalars. GraphQL's ``Int`` is 32-bit, too small for volumes, sizes,
sequence numbers and epoch milliseconds."""

from __future__ import annotations

import math
import uuid
from typing import NewType

import strawberry
from strawberry.types.scalar import ScalarDefinition

from schema.money import MONEY_SCALARS
from server.errors import InvalidInput

Long = NewType("Long", int)
Timestamp = NewType("Timestamp", float)


def _parse_long(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("Long must be an integer")
    as_int = int(value)
    if as_int != value and str(as_int) != value:
        raise ValueError("Long must be an integer")
    if not -(2**63) <= as_int < 2**63:
        raise ValueError("Long must fit in 64 bits")
    return as_int


def _parse_timestamp(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("Timestamp must be a number of milliseconds since the Unix epoch")
    if not math.isfinite(value) or value < 0:
        raise ValueError("Timestamp must be a non-negative finite number")
    return float(value)


SCALARS: dict[object, ScalarDefinition] = {
    Long: strawberry.scalar(
        name="Long",
        description="A 64-bit signed integer, sent as a JSON number.",
        serialize=int,
        parse_value=_parse_long,
    ),
    Timestamp: strawberry.scalar(
        name="Timestamp",
        description=(
            "Milliseconds since the Unix epoch (UTC), as a JSON number. Server receive "
            "times carry microseconds as the fractional part."
        ),
        serialize=float,
        parse_value=_parse_timestamp,
    ),
    **MONEY_SCALARS,  # Decimal: exact decimal strings (schema/money.py)
}


def uuid_argument(raw: object, what: str) -> uuid.UUID:
    """An ``ID`` argument that must be a UUID, with a clear error naming what it is."""
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        raise InvalidInput(f"{str(raw)[:64]!r} is not {what}") from None


def ms_from_ns(ns: int) -> Timestamp:
    return Timestamp(ns / 1_000_000)
