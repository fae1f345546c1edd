"""Trading in GraphQL: the types, enums and inputs of orders, fills, positions, the
account and performance, built from ``server.trading``'s values.

- ``enums``: the domain's enums registered as GraphQL enums (``OrderSide``,
  ``OrderType``, ``TimeInForce``, ``OrderClass``, ``OrderStatus``, ``OrderEventKind``,
  ``LegRole``, ``PositionSide``, ``OrderReason``).
- ``orders``: ``Order.of(state, broker=, source=, ...)``, ``Fill``, ``OrderUpdate`` (a
  ledger entry, its cursor from ``update_cursor``/``ledger_seq_of``), ``OrderConnection``.
- ``portfolio``: ``Position``, ``Account.of(account, valuation, broker=)``,
  ``EquityPoint``, ``Drawdown``, ``Performance.of(perf, from_ms=, to_ms=)``.
- ``inputs``: ``OrderInput``/``ReplaceOrderInput`` and their ``doc()`` for the domain.

Money is the exact ``Decimal`` scalar (``schema.money``), registered for Python's
``decimal.Decimal`` in ``schema.scalars.SCALARS``: a schema built without that map
would fall back to strawberry's own ``Decimal`` scalar, which prints exponents.
"""

from schema.trading.enums import (
    EventKind,
    LegRole,
    OrderClass,
    OrderEventKind,
    OrderReason,
    OrderSide,
    OrderStatus,
    OrderType,
    PositionSide,
    Reason,
    Side,
    TimeInForce,
)
from schema.trading.inputs import OrderInput, ReplaceOrderInput, StopLossInput, TakeProfitInput
from schema.trading.orders import (
    Fill,
    Order,
    OrderConnection,
    OrderEdge,
    OrderUpdate,
    ledger_seq_of,
    update_cursor,
)
from schema.trading.portfolio import Account, Drawdown, EquityPoint, Performance, Position

__all__ = [
    "Account",
    "Drawdown",
    "EquityPoint",
    "EventKind",
    "Fill",
    "LegRole",
    "Order",
    "OrderClass",
    "OrderConnection",
    "OrderEdge",
    "OrderEventKind",
    "OrderInput",
    "OrderReason",
    "OrderSide",
    "OrderStatus",
    "OrderType",
    "OrderUpdate",
    "Performance",
    "Position",
    "PositionSide",
    "Reason",
    "ReplaceOrderInput",
    "Side",
    "StopLossInput",
    "TakeProfitInput",
    "TimeInForce",
    "ledger_seq_of",
    "update_cursor",
]
