"""Orders, positions and the account in GraphQL: every field scoped to the caller.

Mutations need the ``trading`` scope (a session, or an API key of scope trading:
``schema.access_policy``); reads need a signed-in user. Money is the exact ``Decimal``
scalar. ``orderUpdates`` is the ledger of the caller's orders, live, resumable from a
cursor; ``positions`` and ``account`` are valued at the market as it moves, throttled
per subscription.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterable, Callable
from decimal import Decimal
from typing import Annotated, Any

import strawberry

from schema.alerts import SlowConsumer
from schema.context import Info
from schema.pagination import DEFAULT_PAGE, page_size
from schema.scalars import Timestamp
from schema.subscription_quota import admit_subscription, releaser
from schema.trading import (
    Account,
    EquityPoint,
    Order,
    OrderConnection,
    OrderInput,
    OrderStatus,
    OrderUpdate,
    Performance,
    Position,
    ReplaceOrderInput,
)
from schema.trading.orders import ledger_seq_of
from server.delivery.bus import attach_topic
from server.delivery.multiplex import Feed
from server.errors import InvalidInput, InvalidSymbol, LimitExceeded
from server.market.symbols import is_valid_symbol
from server.services.orders.bulk import cancel_all, close_all, close_position
from server.services.orders.ledger import account_topic, orders_topic
from server.services.orders.portfolio import PortfolioWatch, history, performance_of
from server.services.orders.service import OrderService
from server.storage.order_reads import ledger_after
from server.storage.order_rows import OrderRecord, StoredEntry
from server.trading.account import PositionValue

#: Updates a resuming subscriber may be behind; more must be read with ``orders``.
MAX_RESUME = 10_000
UPDATE_QUEUE = 10_000


def _service(info: Info) -> OrderService:
    service = info.context.services.orders
    assert service is not None
    return service


def _owner(info: Info) -> str:
    return info.context.caller.owner()


def order_of(record: OrderRecord) -> Order:
    meta = record.meta
    return Order.of(
        record.state,
        broker=meta.broker,
        source=meta.source,
        alert_id=None if meta.alert_id is None else str(meta.alert_id),
        replaced_by=meta.replaced_by,
    )


def _symbol(raw: str) -> str:
    """A symbol argument, by the same rule as an order's (``is_valid_symbol``)."""
    symbol = raw.strip().upper()
    if not is_valid_symbol(symbol):
        raise InvalidSymbol(f"{raw[:16]!r} is not a valid symbol", symbol=raw[:16])
    return symbol


def _order_cursor(record: OrderRecord) -> str:
    raw = f"o:{record.order.created_ms}:{record.order.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _after(raw: str | None) -> tuple[int, str] | None:
    if raw is None:
        return None
    try:
        kind, ms, ident = base64.urlsafe_b64decode(raw.encode()).decode().split(":")
        if kind != "o" or not ident:
            raise ValueError(kind)
        return int(ms), ident
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise InvalidInput(
            "not a cursor of orders: pass an endCursor it returned", field="after"
        ) from None


def _ms(value: float | None, default: int) -> int:
    return default if value is None else int(value)


@strawberry.type
class OrdersQuery:
    @strawberry.field(
        description="Your orders, newest first, optionally of some statuses or a symbol: "
        "`first` after the `after` cursor."
    )
    async def orders(
        self,
        info: Info,
        status: list[OrderStatus] | None = None,
        symbol: str | None = None,
        after: str | None = None,
        first: int = DEFAULT_PAGE,
    ) -> OrderConnection:
        limit = page_size(first, 500)
        page = await _service(info).orders(
            _owner(info),
            statuses=None if status is None else [str(s.value) for s in status],
            symbol=None if symbol is None else _symbol(symbol),
            after=_after(after),
            limit=limit + 1,
        )
        edges = [(_order_cursor(r), order_of(r)) for r in page[:limit]]
        return OrderConnection.of(edges, has_next_page=len(page) > limit)

    @strawberry.field(description="One of your orders; null if you have none with this id.")
    async def order(self, info: Info, id: strawberry.ID) -> Order | None:
        record = await _service(info).order(_owner(info), str(id)[:64])
        return None if record is None else order_of(record)

    @strawberry.field(description="Your open positions, valued at their marks now.")
    async def positions(self, info: Info) -> list[Position]:
        service = _service(info)
        _, valuation = await service.valuation(_owner(info), info.context.caller.limits)
        return [Position.of(p) for p in valuation.positions]

    @strawberry.field(description="Your position in one symbol; null if you hold none.")
    async def position(self, info: Info, symbol: str) -> Position | None:
        service = _service(info)
        _, valuation = await service.valuation(_owner(info), info.context.caller.limits)
        wanted = _symbol(symbol)
        return next(
            (Position.of(p) for p in valuation.positions if p.position.symbol == wanted), None
        )

    @strawberry.field(description="Your account: cash, equity, buying power, P&L, positions.")
    async def account(self, info: Info) -> Account:
        service = _service(info)
        owner = _owner(info)
        _, valuation = await service.valuation(owner, info.context.caller.limits)
        book = await service.user(owner)
        return Account.of(book.account, valuation, broker=service.broker.name)

    @strawberry.field(
        description="Your equity over time (the equity curve), at the close of each bar of "
        "`timeframe` (1m or 1d) from `from` to `to` (default: the last day)."
    )
    async def portfolio_history(
        self,
        info: Info,
        from_: Annotated[Timestamp | None, strawberry.argument(name="from")] = None,
        to: Timestamp | None = None,
        timeframe: str = "1m",
    ) -> list[EquityPoint]:
        service = _service(info)
        now = service.now_ms()
        to_ms = _ms(to, now)
        from_ms = _ms(from_, to_ms - 86_400_000)
        points = await history(
            service, _owner(info), from_ms, to_ms, timeframe=timeframe, now_ms=now
        )
        return [EquityPoint.of(p) for p in points]

    @strawberry.field(
        description="Time-weighted return, maximum drawdown, realised P&L and win rate "
        "from `from` to `to` (default: everything until now)."
    )
    async def performance(
        self,
        info: Info,
        from_: Annotated[Timestamp | None, strawberry.argument(name="from")] = None,
        to: Timestamp | None = None,
    ) -> Performance:
        service = _service(info)
        now = service.now_ms()
        to_ms = _ms(to, now)
        from_ms = _ms(from_, 0)
        perf = await performance_of(service, _owner(info), from_ms, to_ms, now_ms=now)
        return Performance.of(perf, from_ms=from_ms, to_ms=to_ms)


@strawberry.type
class OrdersMutation:
    @strawberry.mutation(
        description="Place an order (or a bracket/OCO/OTO's orders; the entry is returned). "
        "It is stored before the broker sees it. With an `idempotencyKey`, a retry returns "
        "the same order, never a second one. `confirm: true` accepts a limit price far "
        "from the last trade (PRICE_OUT_OF_BAND otherwise)."
    )
    async def place_order(
        self,
        info: Info,
        input: OrderInput,
        idempotency_key: str | None = None,
        confirm: bool = False,
    ) -> Order:
        records = await _service(info).place(
            _owner(info),
            info.context.caller.limits,
            input.doc(),
            idempotency_key=idempotency_key,
            confirm=confirm,
        )
        return order_of(records[0])

    @strawberry.mutation(
        description="Replace a working order by a new one with the changes given; returns "
        "the replacement. The old order becomes REPLACED once the broker agrees (or stays, "
        "if it filled first: then the replacement is REJECTED)."
    )
    async def replace_order(
        self, info: Info, id: strawberry.ID, input: ReplaceOrderInput, confirm: bool = False
    ) -> Order:
        record = await _service(info).replace(
            _owner(info), info.context.caller.limits, str(id)[:64], input.doc(), confirm=confirm
        )
        return order_of(record)

    @strawberry.mutation(
        description="Ask the broker to cancel an order: it is PENDING_CANCEL until the broker "
        "answers (a fill may still come first)."
    )
    async def cancel_order(self, info: Info, id: strawberry.ID) -> Order:
        record = await _service(info).cancel(_owner(info), str(id)[:64])
        return order_of(record)

    @strawberry.mutation(description="Cancel every open order (of `symbol`, if given).")
    async def cancel_all_orders(self, info: Info, symbol: str | None = None) -> list[Order]:
        records = await cancel_all(
            _service(info), _owner(info), None if symbol is None else _symbol(symbol)
        )
        return [order_of(r) for r in records]

    @strawberry.mutation(
        description="Cancel the symbol's open orders and close the position (or `qty` of it) "
        "with a market order; returns that order."
    )
    async def close_position(
        self,
        info: Info,
        symbol: str,
        qty: Decimal | None = None,
        idempotency_key: str | None = None,
    ) -> Order:
        record = await close_position(
            _service(info),
            _owner(info),
            info.context.caller.limits,
            _symbol(symbol),
            qty,
            idempotency_key=idempotency_key,
        )
        return order_of(record)

    @strawberry.mutation(description="Cancel every open order and close every position.")
    async def close_all_positions(self, info: Info) -> list[Order]:
        records = await close_all(_service(info), _owner(info), info.context.caller.limits)
        return [order_of(r) for r in records]


def render_update(item: StoredEntry, _snapshot: bool, _dropped: int) -> OrderUpdate:
    entry = item.entry
    assert entry.meta is not None
    meta = entry.meta
    order = Order.of(
        entry.state(),
        broker=meta.broker,
        source=meta.source,
        alert_id=None if meta.alert_id is None else str(meta.alert_id),
        replaced_by=entry.replaced_by or meta.replaced_by,
    )
    return OrderUpdate.of(entry.event, order, ledger_seq=item.seq)


def _render_position(item: Any, _snapshot: bool, _dropped: int) -> Position:
    watch, _ = item
    value: PositionValue = watch.render_item(item)
    return Position.of(value)


def _slow_updates(dropped: int) -> SlowConsumer:
    return SlowConsumer(
        f"{dropped} order updates could not be delivered in time; subscribe again with "
        "`after` set to the last cursor you received",
        dropped=dropped,
    )


def _seq_of(item: StoredEntry) -> int:
    return item.seq


@strawberry.type
class OrdersSubscription:
    @strawberry.subscription(
        description="Every change of your orders and every fill, in ledger order, never "
        "conflated; each is stored before it is sent. After a reconnect, pass the last "
        "`cursor` received as `after`: what happened meanwhile comes first."
    )
    async def order_updates(
        self, info: Info, after: str | None = None
    ) -> AsyncIterable[OrderUpdate]:
        service = _service(info)
        owner = _owner(info)
        backlog: list[StoredEntry] = []
        start = None
        if after is not None:
            start = ledger_seq_of(after)
            backlog = await ledger_after(service.pool, owner, start, MAX_RESUME + 1)
            if len(backlog) > MAX_RESUME:
                raise LimitExceeded(
                    f"more than {MAX_RESUME} updates since this cursor: read `orders` first",
                    limit=MAX_RESUME,
                )
        lease = await admit_subscription(info, [])
        bus = info.context.services.bus
        assert bus is not None
        topic = orders_topic(owner)
        ledger = service.ledger

        def snapshot() -> list[StoredEntry]:
            if start is None:
                return []
            # What was committed since the read is in the ledger's recent entries.
            seen = backlog[-1].seq if backlog else start
            recent = [e for e in ledger.recent.get(owner, ()) if e.seq > seen]
            return [*backlog, *recent]

        return Feed(
            attach=attach_topic(bus, topic),
            snapshot=snapshot,
            render=render_update,
            queue_size=UPDATE_QUEUE,
            overflow_error=_slow_updates,
            scope=("orders", owner),
            release=releaser(lease),
            position=_seq_of,
        )

    @strawberry.subscription(
        description="Your positions, revalued as their symbols trade and quote and as you "
        "trade: at most one update per position every `throttleMs`. A position closed to "
        "zero comes once with qty 0. The current positions come first."
    )
    async def positions(self, info: Info, throttle_ms: int = 250) -> AsyncIterable[Position]:
        await _service(info).user(_owner(info))
        return await _portfolio_feed(info, throttle_ms, _render_position, per_symbol=True)

    @strawberry.subscription(
        description="Your account, revalued as your positions' symbols trade and quote and as "
        "you trade: at most one update every `throttleMs`. The current account comes first."
    )
    async def account(self, info: Info, throttle_ms: int = 1000) -> AsyncIterable[Account]:
        service = _service(info)
        broker = service.broker.name

        def render(item: Any, _snapshot: bool, _dropped: int) -> Account:
            watch, _ = item
            account, valuation = watch.render_item(item)
            return Account.of(account, valuation, broker=broker)

        await service.user(_owner(info))
        return await _portfolio_feed(info, throttle_ms, render, per_symbol=False)


async def _portfolio_feed(
    info: Info, throttle_ms: int, render: Callable[[Any, bool, int], Any], *, per_symbol: bool
) -> Feed:
    if not 0 <= throttle_ms <= 60_000:
        raise InvalidInput("throttleMs is between 0 and 60000", field="throttleMs")
    service = _service(info)
    owner = _owner(info)
    services = info.context.services
    assert services.bus is not None
    lease = await admit_subscription(info, [])
    watch = PortfolioWatch(
        service,
        owner,
        services.hub,
        services.bus,
        account_topic(owner),
        per_symbol=per_symbol,
        multiplier=info.context.caller.limits.margin_multiplier,
    )
    return Feed(
        attach=watch.attach,
        snapshot=watch.snapshot,
        render=render,
        key=watch.key,
        throttle_s=throttle_ms / 1000.0,
        scope=("portfolio", owner, per_symbol),
        release=releaser(lease),
    )
