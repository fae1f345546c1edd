"""How Alpaca writes values on the wire, and its error answers.

- Money and quantities are JSON strings holding plain decimals with no exponent and
  no trailing zeros (``"131.355"``, ``"100000"``, ``"0"``), never JSON numbers.
- Timestamps on orders, fills and trade updates are RFC 3339 in UTC with nanoseconds
  (``"2019-11-20T06:49:45.214827487Z"``); ``/v2/clock`` answers in New York time with
  its offset (``"2024-01-02T10:30:00.123456789-05:00"``).
- Errors are ``{"code": 8-digit int, "message": str, ...extra}``; the first three
  digits of ``code`` repeat the HTTP status (``40010001`` is a 422 validation error
  for historical reasons, ``40310000`` is forbidden, ``40410000`` not found,
  ``42210000`` unprocessable, ``42910000`` rate limited, ``40110000`` unauthorized).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from server.market.trading_day import NEW_YORK

# Alpaca error codes (the ``code`` field of an error body).
CODE_MALFORMED = 40010000
CODE_INVALID = 40010001
CODE_UNAUTHORIZED = 40110000
CODE_FORBIDDEN = 40310000
CODE_NOT_FOUND = 40410000
CODE_UNPROCESSABLE = 42210000
CODE_RATE_LIMITED = 42910000
CODE_INTERNAL = 50010000


class AlpacaError(Exception):
    """An error answer: HTTP ``status`` with Alpaca's JSON body (which has no ``code``
    when the API gateway answers rather than Alpaca's service)."""

    def __init__(
        self,
        status: int,
        code: int | None,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: str,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict[str, Any]:
        head: dict[str, Any] = {} if self.code is None else {"code": self.code}
        return {**head, "message": self.message, **self.extra}


def invalid(message: str) -> AlpacaError:
    """A request Alpaca cannot parse into an order: 422 with code 40010001."""
    return AlpacaError(422, CODE_INVALID, message)


def unprocessable(message: str) -> AlpacaError:
    """A well-formed request a business rule refuses: 422 with code 42210000."""
    return AlpacaError(422, CODE_UNPROCESSABLE, message)


def not_found(message: str) -> AlpacaError:
    return AlpacaError(404, CODE_NOT_FOUND, message)


def exact(value: Decimal | str | int) -> Decimal:
    """A test's price or quantity as a ``Decimal``; a float is refused rather than
    carried in with its binary error (``Decimal(190.1)`` is not 190.1)."""
    if isinstance(value, float):
        raise TypeError(f"give {value!r} as a str or Decimal, not a float")
    return Decimal(value)


def dec(value: Decimal) -> str:
    """``Decimal("100.500")`` -> ``"100.5"``, ``Decimal("1E+5")`` -> ``"100000"``."""
    text = format(value.normalize(), "f")
    return "0" if text == "-0" else text


def opt_dec(value: Decimal | None) -> str | None:
    return None if value is None else dec(value)


def ts(ns: int) -> str:
    """Nanoseconds since the epoch -> ``2019-11-20T06:49:45.214827487Z``."""
    seconds, frac = divmod(ns, 1_000_000_000)
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%dT%H:%M:%S}.{frac:09d}Z"


def opt_ts(ns: int | None) -> str | None:
    return None if ns is None else ts(ns)


def ts_new_york(ns: int) -> str:
    """Nanoseconds since the epoch -> ``2024-01-02T10:30:00.123456789-05:00``."""
    seconds, frac = divmod(ns, 1_000_000_000)
    local = datetime.fromtimestamp(seconds, UTC).astimezone(NEW_YORK)
    offset = local.strftime("%z")
    return f"{local:%Y-%m-%dT%H:%M:%S}.{frac:09d}{offset[:3]}:{offset[3:]}"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ns_of(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)  # alpaca-py sends naive datetimes as UTC too
    return (dt - _EPOCH) // timedelta(microseconds=1) * 1000


def parse_time(raw: str) -> int:
    """An RFC 3339 timestamp or a ``YYYY-MM-DD`` date (New York midnight) from a query
    string -> nanoseconds. ``ValueError`` when it is neither."""
    if len(raw) == 10:
        day = datetime.fromisoformat(raw).replace(tzinfo=NEW_YORK)
        return ns_of(day)
    # datetime keeps microseconds; the fraction is read separately to keep nanoseconds.
    match = _FRACTION.search(raw)
    fraction = match.group(1) if match else ""
    whole = raw[: match.start()] + raw[match.end() :] if match else raw
    seconds = ns_of(datetime.fromisoformat(whole.replace("Z", "+00:00")))
    return seconds + int(fraction.ljust(9, "0")[:9] or 0)


_FRACTION = re.compile(r"\.(\d+)")
