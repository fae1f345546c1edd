"""Trading errors, each with a stable ``code`` (``extensions.code`` for clients).

Three families:

- ``InvalidOrder`` (and subclasses): the request itself is malformed or inconsistent.
  ``extensions.field`` names the offending input (GraphQL names: ``limitPrice``,
  ``takeProfit.limitPrice``) and ``extensions.reason`` says exactly what is wrong
  (``NOT_POSITIVE``, ``NOT_FINITE``, ``TOO_MANY_DECIMALS``, ``REQUIRED``, ...).
- ``RiskRejected`` (and subclasses): a well-formed order that the account, the tier's
  limits or the market refuse right now. Extensions carry the numbers (``required``,
  ``available``, ``limit``) as decimal strings.
- Order operations: ``OrderNotFound``, ``OrderNotCancelable``, ``OrderNotReplaceable``,
  and ``InvalidTransition`` (an event the state machine refuses: a bug or a broker
  report that contradicts what we know, never silently dropped).
"""

from __future__ import annotations

from decimal import Decimal

from server.errors import InvalidInput, TickgraphError

#: The service's code for a repeated idempotency key with a different request.
DUPLICATE_REQUEST = "DUPLICATE_REQUEST"


def _ext(values: dict[str, object]) -> dict[str, object]:
    """Extensions as JSON-safe values: decimals as strings, ``None`` left out."""
    return {
        k: (str(v) if isinstance(v, Decimal) else v) for k, v in values.items() if v is not None
    }


class InvalidOrder(InvalidInput):
    """The order request is malformed (a missing side, an unknown type, a field that
    this kind of order does not take, ...)."""

    code = "INVALID_ORDER"

    def __init__(self, message: str, *, field: str, reason: str, **extensions: object) -> None:
        super().__init__(message, **_ext({"field": field, "reason": reason, **extensions}))
        self.field = field
        self.reason = reason


class InvalidQuantity(InvalidOrder):
    """``qty``/``notional``: zero, negative, not a number, not finite, absurd, too precise,
    both or neither given."""

    code = "INVALID_QUANTITY"


class FractionalNotAllowed(InvalidOrder):
    """Fractional shares (or a notional amount) on an order that must be whole shares."""

    code = "FRACTIONAL_NOT_ALLOWED"


class InvalidPrice(InvalidOrder):
    """A limit, stop or trail: missing where required, given where meaningless, zero,
    negative, not finite, absurd, or off the price increment (sub-penny)."""

    code = "INVALID_PRICE"


class InvalidTimeInForce(InvalidOrder):
    """A time in force (or ``extendedHours``) this kind of order cannot have."""

    code = "INVALID_TIME_IN_FORCE"


class InvalidBracket(InvalidOrder):
    """The take-profit/stop-loss legs of a bracket, OCO or OTO order are missing,
    superfluous, or on the wrong side of each other or of the entry."""

    code = "INVALID_BRACKET"


class StopPriceWrongSide(InvalidOrder):
    """A stop that would trigger at once: a buy stop at or below the market, a sell stop
    at or above it (``extensions.marketPrice`` says what it was compared with)."""

    code = "STOP_PRICE_WRONG_SIDE"


class RiskRejected(TickgraphError):
    """A valid order that a pre-trade check refuses."""

    code = "RISK_REJECTED"

    def __init__(self, message: str, **extensions: object) -> None:
        super().__init__(message, **_ext(extensions))


class InsufficientBuyingPower(RiskRejected):
    code = "INSUFFICIENT_BUYING_POWER"


class MaxOrderValue(RiskRejected):
    code = "MAX_ORDER_VALUE"


class MaxPosition(RiskRejected):
    code = "MAX_POSITION"


class SymbolNotTradable(RiskRejected):
    code = "SYMBOL_NOT_TRADABLE"


class PriceOutOfBand(RiskRejected):
    """A limit price too far from the last trade; ``confirm: true`` places it anyway."""

    code = "PRICE_OUT_OF_BAND"


class MarketClosed(RiskRejected):
    """The order needs a session that is not open (``extensions.nextOpen`` when known)."""

    code = "MARKET_CLOSED"


class ShortNotAllowed(RiskRejected):
    """The order would open or grow a short position where that is not allowed (a cash
    account, or fractional shares)."""

    code = "SHORT_NOT_ALLOWED"


class MarketDataUnavailable(RiskRejected):
    """No price to judge the order by (no trade or quote seen for the symbol yet)."""

    code = "MARKET_DATA_UNAVAILABLE"


class DuplicateRequest(TickgraphError):
    """An idempotency key reused with a different request (raised by the service)."""

    code = DUPLICATE_REQUEST


class OrderNotFound(TickgraphError):
    code = "ORDER_NOT_FOUND"


class OrderNotCancelable(TickgraphError):
    """The order is already done (filled, canceled, expired, replaced, rejected) or a
    cancel is already pending."""

    code = "ORDER_NOT_CANCELABLE"


class OrderNotReplaceable(TickgraphError):
    """The order cannot be replaced in its state, or the change is not allowed."""

    code = "ORDER_NOT_REPLACEABLE"


class InvalidTransition(TickgraphError):
    """The order state machine refuses an event in the order's current status."""

    code = "INVALID_ORDER_TRANSITION"


class PositionNotFound(TickgraphError):
    """No open position in the symbol (closePosition of something not held)."""

    code = "POSITION_NOT_FOUND"


class TradingNotAllowed(TickgraphError):
    """The caller's tier places no orders (its order rate is zero)."""

    code = "TRADING_NOT_ALLOWED"
