"""The order model: what a user may ask for, as immutable typed values.

``OrderRequest`` is a validated request (``server.trading.validation.parse_order`` is
the only way user input becomes one). ``build_orders`` turns a request into the
``Order`` values a broker works: one for a simple order, the entry and its legs for a
bracket (3) or OTO (2), the two exits of an OCO (2). Each has its own id and, for legs,
its ``parent_id``:

- BRACKET / OTO: the legs' parent is the entry. Legs are held until the entry has
  filled, then work as an OCO pair (bracket) or alone (OTO).
- OCO: the take-profit limit is the first order (Alpaca calls it the parent), the
  stop-loss is its leg; the first fill of either cancels the other.

Enum values are Alpaca's wire names (``stop_limit``, ``gtc``, ``bracket``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from server.trading.money import is_whole


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY

    @property
    def sign(self) -> int:
        """+1 for a buy (shares in), -1 for a sell."""
        return 1 if self is Side.BUY else -1


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    STOP_LIMIT = "stop_limit"
    TRAILING_STOP = "trailing_stop"


class TimeInForce(StrEnum):
    DAY = "day"  # until the close of the session it works in
    GTC = "gtc"  # until canceled (the paper broker expires it after a configurable age)
    IOC = "ioc"  # fill what can be filled at once, cancel the rest
    FOK = "fok"  # fill all at once or nothing
    OPG = "opg"  # in the opening auction: at the session's first trade
    CLS = "cls"  # in the closing auction: at the session's last trade


class OrderClass(StrEnum):
    SIMPLE = "simple"
    BRACKET = "bracket"
    OCO = "oco"
    OTO = "oto"


class LegRole(StrEnum):
    ENTRY = "entry"
    TAKE_PROFIT = "take_profit"
    STOP_LOSS = "stop_loss"


#: Order types that carry a limit price / a stop price.
LIMIT_TYPES = frozenset({OrderType.LIMIT, OrderType.STOP_LIMIT})
STOP_TYPES = frozenset({OrderType.STOP, OrderType.STOP_LIMIT})


@dataclass(frozen=True, slots=True)
class OrderSpec:
    """One executable order: what to trade and on which terms.

    Exactly one of ``qty`` and ``notional`` is set (notional: dollars to spend or
    receive, market/day orders only; the quantity follows from the fill prices).
    ``trail_price``/``trail_percent``: exactly one for a trailing stop.
    """

    symbol: str
    side: Side
    type: OrderType
    time_in_force: TimeInForce
    qty: Decimal | None = None
    notional: Decimal | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trail_price: Decimal | None = None
    trail_percent: Decimal | None = None
    extended_hours: bool = False

    @property
    def fractional(self) -> bool:
        return self.notional is not None or (self.qty is not None and not is_whole(self.qty))


@dataclass(frozen=True, slots=True)
class TakeProfit:
    limit_price: Decimal


@dataclass(frozen=True, slots=True)
class StopLoss:
    stop_price: Decimal
    limit_price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A validated order request. For OCO, ``entry`` is the take-profit limit order."""

    entry: OrderSpec
    order_class: OrderClass = OrderClass.SIMPLE
    take_profit: TakeProfit | None = None
    stop_loss: StopLoss | None = None
    client_order_id: str | None = None

    @property
    def order_count(self) -> int:
        """How many ``Order`` values ``build_orders`` makes (how many ids it needs)."""
        if self.order_class is OrderClass.SIMPLE:
            return 1
        if self.order_class is OrderClass.BRACKET:
            return 3
        return 2


@dataclass(frozen=True, slots=True)
class Order:
    """One order as a broker works it."""

    id: str
    spec: OrderSpec
    created_ms: int
    order_class: OrderClass = OrderClass.SIMPLE
    role: LegRole = LegRole.ENTRY
    #: The entry of a bracket/OTO leg, or the first order of an OCO pair.
    parent_id: str | None = None
    client_order_id: str | None = None
    #: The order this one replaces (``replace`` makes a new order).
    replaces: str | None = None

    @property
    def symbol(self) -> str:
        return self.spec.symbol

    @property
    def side(self) -> Side:
        return self.spec.side


def _exit_specs(request: OrderRequest) -> tuple[OrderSpec | None, OrderSpec | None]:
    """The take-profit and stop-loss legs as executable specs."""
    entry = request.entry
    exit_side = entry.side if request.order_class is OrderClass.OCO else entry.side.opposite
    # Legs of an entry whose quantity is not known up front are sized at activation.
    tif = entry.time_in_force
    tp = sl = None
    if request.take_profit is not None:
        tp = OrderSpec(
            symbol=entry.symbol,
            side=exit_side,
            type=OrderType.LIMIT,
            time_in_force=tif,
            qty=entry.qty,
            limit_price=request.take_profit.limit_price,
        )
    if request.stop_loss is not None:
        stop = request.stop_loss
        sl = OrderSpec(
            symbol=entry.symbol,
            side=exit_side,
            type=OrderType.STOP if stop.limit_price is None else OrderType.STOP_LIMIT,
            time_in_force=tif,
            qty=entry.qty,
            stop_price=stop.stop_price,
            limit_price=stop.limit_price,
        )
    return tp, sl


def build_orders(request: OrderRequest, ids: Sequence[str], created_ms: int) -> tuple[Order, ...]:
    """The orders of ``request``, with ``ids`` in this order: entry (or, for OCO, the
    take-profit), then take-profit, then stop-loss, as present."""
    if len(ids) != request.order_count or len(set(ids)) != len(ids):
        raise ValueError(f"{request.order_class} needs {request.order_count} distinct ids")
    cls = request.order_class
    coid = request.client_order_id
    if cls is OrderClass.SIMPLE:
        return (Order(ids[0], request.entry, created_ms, cls, LegRole.ENTRY, None, coid),)
    tp, sl = _exit_specs(request)
    if cls is OrderClass.OCO:
        assert tp is not None and sl is not None
        first = Order(ids[0], tp, created_ms, cls, LegRole.TAKE_PROFIT, None, coid)
        return (first, Order(ids[1], sl, created_ms, cls, LegRole.STOP_LOSS, ids[0]))
    orders = [Order(ids[0], request.entry, created_ms, cls, LegRole.ENTRY, None, coid)]
    rest = iter(ids[1:])
    if tp is not None:
        orders.append(Order(next(rest), tp, created_ms, cls, LegRole.TAKE_PROFIT, ids[0]))
    if sl is not None:
        orders.append(Order(next(rest), sl, created_ms, cls, LegRole.STOP_LOSS, ids[0]))
    return tuple(orders)
