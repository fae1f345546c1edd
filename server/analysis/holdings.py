"""The trading domain as the analysis's ``Holdings`` port.

Reads the order service's in-memory book (``OrderService.book``): the same account,
marks and open orders the pre-trade checks read, so an analysis sees every fill the
broker has reported, and nothing here touches the broker. Positions are valued at the
order service's marks (the quote's midpoint when it is newer than the last trade, else
the last trade; the last fill when the symbol has no market data), exactly as
``positions`` and ``account`` in GraphQL show them.

The mapping (``docs/analysis.md``): a position's signed quantity becomes a side and a
positive quantity; an open order's enums keep their wire values (``buy``,
``stop_limit``, ``day``) and its quantity is what is still open; the account is its
equity, cash and buying power at the caller's margin multiplier.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal

from server.analysis.snapshot import AccountView, OrderView, PositionView
from server.services.orders.service import OrderService
from server.trading.account import PositionValue, Valuation
from server.trading.lifecycle import OrderState

ONE = Decimal(1)


def position_view(value: PositionValue) -> PositionView | None:
    position = value.position
    entry = position.avg_entry_price
    if not position.qty or entry is None:
        return None
    return PositionView(
        symbol=position.symbol,
        side="long" if position.qty > 0 else "short",
        qty=abs(position.qty),
        avg_entry_price=entry,
        market_value=value.market_value,
        unrealized_pnl=value.unrealized_pnl,
    )


def order_view(state: OrderState) -> OrderView:
    spec = state.order.spec
    remaining = state.remaining_qty
    return OrderView(
        id=state.order.id,
        side="buy" if spec.side.value == "buy" else "sell",
        type=spec.type.value,
        qty=remaining if remaining is not None else spec.qty,
        status=state.status.value,
        limit_price=spec.limit_price,
        stop_price=spec.stop_price,
        time_in_force=spec.time_in_force.value,
    )


class TradingHoldings:
    def __init__(self, orders: OrderService) -> None:
        self._orders = orders

    async def _valuation(self, user_id: uuid.UUID, multiplier: Decimal = ONE) -> Valuation:
        book = await self._orders.user(str(user_id))
        account = book.account
        marks = self._orders.market.marks(set(account.positions))
        return account.value(marks, multiplier)

    async def position(self, user_id: uuid.UUID, symbol: str) -> PositionView | None:
        valuation = await self._valuation(user_id)
        for value in valuation.positions:
            if value.position.symbol == symbol:
                return position_view(value)
        return None

    async def open_orders(self, user_id: uuid.UUID, symbol: str) -> Sequence[OrderView]:
        book = await self._orders.user(str(user_id))
        return [
            order_view(record.state)
            for record in book.open.values()
            if record.order.symbol == symbol
        ]

    async def positions(self, user_id: uuid.UUID) -> Sequence[PositionView]:
        valuation = await self._valuation(user_id)
        views = (position_view(v) for v in valuation.positions)
        return [v for v in views if v is not None]

    async def account(
        self, user_id: uuid.UUID, margin_multiplier: Decimal = ONE
    ) -> AccountView | None:
        valuation = await self._valuation(user_id, margin_multiplier)
        return AccountView(
            equity=valuation.equity, cash=valuation.cash, buying_power=valuation.buying_power
        )
