"""Operations over many orders: cancel everything (of a symbol), close a position (its
open orders canceled first, then a market order for what is held), close them all.
Each goes through the order service's one path for a single order."""

from __future__ import annotations

from decimal import Decimal

from server.errors import InvalidInput
from server.limits.tiers import TierLimits
from server.services.orders.service import OrderService
from server.storage.order_rows import OrderRecord
from server.trading.errors import OrderNotCancelable, OrderNotFound, PositionNotFound
from server.trading.model import OrderType, TimeInForce
from server.trading.states import DONE, OrderStatus


async def cancel_all(
    service: OrderService, owner: str, symbol: str | None = None
) -> list[OrderRecord]:
    """Request a cancel of every open order (held legs go with their entry)."""
    book = await service.user(owner)
    targets = [
        r
        for r in list(book.open.values())
        if (symbol is None or r.order.symbol == symbol)
        and r.state.status not in (OrderStatus.PENDING_CANCEL, OrderStatus.HELD)
        and r.state.status not in DONE
    ]
    out = []
    for record in targets:
        if record.state.status in DONE:
            continue
        try:
            out.append(await service.cancel(owner, record.order.id))
        except (OrderNotCancelable, OrderNotFound):
            continue  # it ended meanwhile
    return out


async def close_position(
    service: OrderService,
    owner: str,
    limits: TierLimits,
    symbol: str,
    qty: Decimal | None = None,
    *,
    idempotency_key: str | None = None,
) -> OrderRecord:
    """Cancel the symbol's open orders, then a market order for the position (or
    ``qty`` of it) on the other side."""
    book = await service.user(owner)
    position = book.account.positions.get(symbol)
    if position is None or not position.qty:
        raise PositionNotFound(f"you hold no {symbol[:16]}", symbol=symbol[:16])
    held = abs(position.qty)
    if qty is not None and not (0 < qty <= held):
        raise InvalidInput(
            f"qty must be above 0 and at most the {held} held", field="qty", held=str(held)
        )
    await cancel_all(service, owner, symbol)
    side = "sell" if position.qty > 0 else "buy"
    doc = {
        "symbol": symbol,
        "side": side,
        "type": str(OrderType.MARKET),
        "timeInForce": str(TimeInForce.DAY),
        "qty": str(qty if qty is not None else held),
    }
    placed = await service.place(owner, limits, doc, idempotency_key=idempotency_key)
    return placed[0]


async def close_all(service: OrderService, owner: str, limits: TierLimits) -> list[OrderRecord]:
    book = await service.user(owner)
    await cancel_all(service, owner)
    out = []
    for symbol in sorted(book.account.positions):
        out.append(await close_position(service, owner, limits, symbol))
    return out
