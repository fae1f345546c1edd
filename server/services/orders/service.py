"""Placing, replacing and canceling orders; what a user holds and is worth.

How an order is placed (``place``):

1. ``parse_order`` validates the request (each fault its own code), then the idempotency
   key: a request with a key already used by this user returns that request's orders
   (or ``DUPLICATE_REQUEST`` when the request differs). Concurrent requests with one
   key wait for each other in this process; across processes a unique index decides.
2. The tier's order rate is charged, then the pre-trade checks run against the
   in-memory account, marks and open orders (``server.trading.risk.check_order``), and
   the order's reservation is added to the book, all in one synchronous step: two
   concurrent orders can never both spend the same buying power.
3. The orders and their outbox row are inserted in one transaction. Only then does the
   broker see them: the relay (``_submit``) calls the broker, whose events the book folds
   and the ledger writes; the outbox row is deleted with them. ``place`` returns once
   that answer is committed (or after ``commit_timeout_s``, with the order as it is:
   it is durable either way).

A crash between 3's commit and the broker call leaves the outbox row; the next start-up
re-issues it (``restore``). Cancel and replace follow the same path: outbox row,
``cancel_requested``/``replace_requested`` in the ledger, the broker's answer.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal

import asyncpg

from brokers.port import Answer, Broker
from server.errors import InvalidInput
from server.limits.errors import RateLimited
from server.limits.limiter import RateLimiter
from server.limits.tiers import TierLimits
from server.locks import KeyedLocks
from server.services.orders.book import OrderBook, UserBook
from server.services.orders.ledger import OrderLedger
from server.services.orders.market import MarketAccess
from server.services.orders.requests import (
    IDEMPOTENCY_KEY,
    REPLACEABLE,
    Prepared,
    TradingConfig,
    new_order_id,
    request_digest,
)
from server.services.orders.routing import (
    broker_name,
    check_available,
    opening_cash,
    when_answered,
)
from server.storage.order_reads import load_orders, order_by_client_id, order_by_key, orders_page
from server.storage.order_rows import OrderMeta, OrderRecord, spec_to_doc
from server.storage.orders import ensure_account, insert_outbox, insert_request
from server.trading.account import Valuation
from server.trading.errors import (
    DuplicateRequest,
    InvalidTransition,
    OrderNotCancelable,
    OrderNotFound,
    OrderNotReplaceable,
    TradingNotAllowed,
)
from server.trading.events import OrderEvent, Reason
from server.trading.lifecycle import OrderState
from server.trading.model import (
    LegRole,
    Order,
    OrderClass,
    OrderRequest,
    build_orders,
)
from server.trading.risk import RiskContext, check_order
from server.trading.states import EventKind, OrderStatus, next_status
from server.trading.validation import parse_order

log = logging.getLogger(__name__)


class OrderService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        book: OrderBook,
        ledger: OrderLedger,
        broker: Broker,
        market: MarketAccess,
        limiter: RateLimiter,
        config: TradingConfig,
        now_ms: Callable[[], int],
    ) -> None:
        self._pool = pool
        self.book = book
        self.ledger = ledger
        self.broker = broker
        self.market = market
        self._limiter = limiter
        self.config = config
        self.now_ms = now_ms
        self._key_locks = KeyedLocks()
        self._loaded: set[str] = set()
        broker.set_listener(self.on_broker_event)

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    # -- the broker's listener (synchronous, on the hot path) --------------------------

    def on_broker_event(self, event: OrderEvent) -> None:
        entry = self.book.apply(event)
        if entry is not None:
            self.ledger.append(entry)

    # -- accounts ---------------------------------------------------------------------

    async def user(self, owner: str) -> UserBook:
        """The user's book, its account opened (and stored) on first use."""
        if owner not in self._loaded:
            start = await opening_cash(self.broker, owner, self.config.starting_cash)
            cash = await ensure_account(self._pool, owner, broker_name(self.broker, owner), start)
            book = self.book.user(owner, cash)
            if book.account.starting_cash != cash and not book.account.fill_count:
                book.account.starting_cash = book.account.cash = cash
            self._loaded.add(owner)
        return self.book.user(owner)

    def mark_loaded(self, owner: str) -> None:
        self._loaded.add(owner)

    def forget(self, owner: str) -> None:
        """The user's account is loaded again on next use (they switched brokers)."""
        self._loaded.discard(owner)

    # -- placing ----------------------------------------------------------------------

    async def place(
        self,
        owner: str,
        limits: TierLimits,
        doc: Mapping[str, object],
        *,
        idempotency_key: str | None = None,
        confirm: bool = False,
        source: str = "api",
        alert_id: uuid.UUID | None = None,
    ) -> list[OrderRecord]:
        """Place one request (a simple order, or a bracket/OCO/OTO's orders)."""
        request = parse_order(doc)
        if idempotency_key is None:
            return await self._place_new(
                owner, limits, request, key=None, confirm=confirm, source=source, alert_id=alert_id
            )
        if not IDEMPOTENCY_KEY.fullmatch(idempotency_key):
            raise InvalidInput(
                "idempotencyKey is 1-128 printable ASCII characters without spaces",
                field="idempotencyKey",
            )
        # One request per key at a time in this process; the lock lives while in use.
        async with self._key_locks((owner, idempotency_key)):
            existing = await order_by_key(self._pool, owner, idempotency_key)
            if existing is not None:
                return await self._replay(owner, existing, request_digest(request))
            return await self._place_new(
                owner,
                limits,
                request,
                key=idempotency_key,
                confirm=confirm,
                source=source,
                alert_id=alert_id,
            )

    async def _replay(
        self, owner: str, existing: tuple[str, bytes | None], digest: bytes
    ) -> list[OrderRecord]:
        first_id, stored_digest = existing
        if stored_digest != digest:
            raise DuplicateRequest(
                "this idempotencyKey was used for a different order request",
                orderId=first_id,
            )
        return await self._request_orders(owner, first_id)

    async def _request_orders(self, owner: str, first_id: str) -> list[OrderRecord]:
        """The orders one request placed: the first, then its legs."""
        rows = await self._pool.fetch(
            "SELECT id FROM orders WHERE owner = $1 AND (id = $2 OR parent_id = $2) "
            "ORDER BY (id = $2) DESC, created_ms, role",
            owner,
            first_id,
        )
        return await self.records(owner, [r["id"] for r in rows])

    async def _charge(self, owner: str, limits: TierLimits) -> None:
        if limits.orders_per_minute <= 0 or limits.read_only:
            raise TradingNotAllowed(f"the {limits.name} tier does not place orders")
        decision = await self._limiter.hit(
            f"orders:{owner}", limits.orders_per_second, limits.order_burst
        )
        if not decision.allowed:
            raise RateLimited(
                f"the {limits.name} tier allows {limits.orders_per_minute} orders a minute",
                retry_after_s=decision.retry_after_us / 1e6,
                kind="orders",
                tier=limits.name,
            )

    def _context(
        self, book: UserBook, limits: TierLimits, symbol: str, confirm: bool, exclude: str = ""
    ) -> RiskContext:
        symbols = set(book.account.positions) | {symbol}
        open_orders = book.reservations(exclude)
        return RiskContext(
            account=book.account,
            marks=self.market.marks(symbols),
            open_orders=open_orders,
            limits=limits,
            market=self.market.view(symbol),
            now_ms=self.now_ms(),
            calendar=self.config.calendar,
            config=self.config.risk,
            confirm=confirm,
        )

    async def _place_new(
        self,
        owner: str,
        limits: TierLimits,
        request: OrderRequest,
        *,
        key: str | None,
        confirm: bool,
        source: str,
        alert_id: uuid.UUID | None,
    ) -> list[OrderRecord]:
        check_available(self.broker, owner)
        await self._charge(owner, limits)
        await self.user(owner)
        prepared = self.prepare(
            owner, limits, request, key=key, confirm=confirm, source=source, alert_id=alert_id
        )
        try:
            outbox = await prepared.insert(self._pool)
        except BaseException:
            self.discard(prepared)
            raise
        if outbox is None:
            self.discard(prepared)
            return await self._lost_race(owner, request, key)
        self._submit(outbox, prepared.orders)
        await self.ledger.committed(outbox, self.config.commit_timeout_s)
        return prepared.records

    def prepare(
        self,
        owner: str,
        limits: TierLimits,
        request: OrderRequest,
        *,
        key: str | None,
        confirm: bool = False,
        source: str = "api",
        alert_id: uuid.UUID | None = None,
    ) -> Prepared:
        """The pre-trade checks and the reservation, in one synchronous step (no await):
        two concurrent orders can never both spend the same buying power. The caller
        inserts (``Prepared.insert``, in its transaction) and then submits, or
        ``discard``s. The user's book must be loaded (``user``)."""
        book = self.book.user(owner)
        ctx = self._context(book, limits, request.entry.symbol, confirm)
        estimate = check_order(request, ctx)
        ids = [new_order_id() for _ in range(request.order_count)]
        orders = build_orders(request, ids, ctx.now_ms)
        meta = OrderMeta(
            owner,
            broker_name(self.broker, owner),
            estimate.price,
            source,
            alert_id,
            idempotency_key=key,
        )
        records = [OrderRecord(OrderState.of(o), meta) for o in orders]
        for record in records:
            self.book.add(record)
        return Prepared(orders, records, meta, request_digest(request))

    def discard(self, prepared: Prepared) -> None:
        """Release the reservation of orders that were not inserted."""
        for order in prepared.orders:
            self.book.discard(order.id)

    def submit(self, outbox: int, prepared: Prepared) -> None:
        """After the insert committed: the broker sees the orders."""
        self._submit(outbox, prepared.orders)

    async def _lost_race(
        self, owner: str, request: OrderRequest, key: str | None
    ) -> list[OrderRecord]:
        """The insert hit a unique index: another process placed this key, or the
        client order id is taken."""
        if key is not None:
            existing = await order_by_key(self._pool, owner, key)
            if existing is not None:
                return await self._replay(owner, existing, request_digest(request))
        coid = request.client_order_id
        if coid is not None and await order_by_client_id(self._pool, owner, coid) is not None:
            raise DuplicateRequest(
                f"clientOrderId {coid!r} is already used by another of your orders",
                field="clientOrderId",
            )
        raise DuplicateRequest("the order conflicts with one placed at the same time")

    def _submit(self, outbox: int, orders: Sequence[Order]) -> None:
        """The relay: hand the orders to the broker, then mark the outbox row answered
        (after the events the broker reported synchronously, if any)."""
        try:
            answer = self.broker.submit(orders)
        except Exception:
            # The row stays: the next start-up re-issues it.
            log.exception("broker %s refused a submit", self.broker.name)
            return
        when_answered(answer, lambda: self.ledger.answered(outbox))

    # -- cancel and replace ---------------------------------------------------------------

    async def _open_record(self, owner: str, order_id: str) -> OrderRecord:
        record = self.book.get(order_id)
        if record is not None and record.meta.owner == owner:
            return record
        stored = await load_orders(self._pool, [order_id])
        if not stored or stored[0].meta.owner != owner:
            raise OrderNotFound(f"no order {order_id[:64]!r} of yours", orderId=order_id[:64])
        status = stored[0].state.status
        raise OrderNotCancelable(
            f"order {order_id} is {status}: it is done", orderId=order_id, status=str(status)
        )

    def on_request(
        self, record: OrderRecord, kind: EventKind, reason: Reason | None = None
    ) -> bool:
        """Fold and write an event of ours (``cancel_requested``, ``replace_requested``,
        or the rejection of a replacement whose order filled first); False when the
        order can no longer take it (it filled or ended since)."""
        state = record.state
        try:
            status = next_status(
                state.status, kind, acknowledged=state.acknowledged, filled=state.filled_qty > 0
            )
        except InvalidTransition:
            return False
        event = OrderEvent(
            seq=0,
            kind=kind,
            order_id=state.order.id,
            status=status,
            time_ms=max(self.now_ms(), state.updated_ms),
            qty=state.qty,
            filled_qty=state.filled_qty,
            reason=reason,
        )
        self.on_broker_event(event)
        return True

    async def cancel(self, owner: str, order_id: str) -> OrderRecord:
        record = await self._open_record(owner, order_id)
        if record.state.status is OrderStatus.PENDING_CANCEL:
            return record  # asked already: the same answer, not a second request
        outbox = await insert_outbox(self._pool, owner, "cancel", [order_id])
        if not self.on_request(record, EventKind.CANCEL_REQUESTED):
            self.ledger.answered(outbox)
            raise OrderNotCancelable(
                f"order {order_id} is {record.state.status}: it cannot be canceled now",
                orderId=order_id,
                status=str(record.state.status),
            )
        answer: Answer = None
        try:
            answer = self.broker.cancel(order_id)
        except (OrderNotFound, OrderNotCancelable) as exc:
            # Refused on the spot: the order goes back to where it was.
            self.on_request(record, EventKind.CANCEL_REJECTED, Reason.ALREADY_DONE)
            self.ledger.answered(outbox)
            await self.ledger.committed(outbox, self.config.commit_timeout_s)
            raise OrderNotCancelable(
                f"the broker cannot cancel order {order_id}: {exc}", orderId=order_id
            ) from None
        when_answered(answer, lambda: self.ledger.answered(outbox))
        await self.ledger.committed(outbox, self.config.commit_timeout_s)
        return record

    async def replace(
        self,
        owner: str,
        limits: TierLimits,
        order_id: str,
        changes: Mapping[str, object],
        *,
        confirm: bool = False,
    ) -> OrderRecord:
        """Replace an open order by a new one with ``changes`` (its new total ``qty``,
        prices, time in force). Returns the replacement (pending until the broker
        answers); the old order becomes ``replaced`` when it does."""
        old = await self._open_record(owner, order_id)
        record = await self._replacement(owner, limits, old, changes, confirm)
        replacement = record.order
        self.book.add(record)
        try:
            outbox = await insert_request(
                self._pool,
                [replacement],
                [record.meta],
                digest=None,
                outbox_kind="replace",
                outbox_ids=[order_id, replacement.id],
            )
        except BaseException:
            self.book.discard(replacement.id)
            raise
        if outbox is None:
            self.book.discard(replacement.id)
            raise DuplicateRequest(
                f"clientOrderId {replacement.client_order_id!r} is already used by another "
                "of your orders",
                field="clientOrderId",
            )
        refusal = None
        answer: Answer = None
        if not self.on_request(old, EventKind.REPLACE_REQUESTED):
            self.on_request(record, EventKind.REJECTED, Reason.NOT_REPLACEABLE)
            refusal = f"order {order_id} is {old.state.status}: it cannot be replaced now"
        else:
            try:
                answer = self.broker.replace(order_id, replacement)
            except (OrderNotFound, OrderNotReplaceable) as exc:
                self.on_request(old, EventKind.REPLACE_REJECTED, Reason.NOT_REPLACEABLE)
                self.on_request(record, EventKind.REJECTED, Reason.NOT_REPLACEABLE)
                refusal = f"the broker cannot replace order {order_id}: {exc}"
        if refusal is not None:
            self.ledger.answered(outbox)
        else:
            when_answered(answer, lambda: self.ledger.answered(outbox))
        await self.ledger.committed(outbox, self.config.commit_timeout_s)
        if refusal is not None:
            raise OrderNotReplaceable(refusal, orderId=order_id, status=str(old.state.status))
        return record

    async def _replacement(
        self,
        owner: str,
        limits: TierLimits,
        old: OrderRecord,
        changes: Mapping[str, object],
        confirm: bool,
    ) -> OrderRecord:
        """The replacement order, validated and checked (an entry's, as if the old order
        were not there)."""
        unknown = sorted(set(changes) - REPLACEABLE - {"clientOrderId"})
        if unknown:
            raise InvalidInput(f"{unknown[0]!r} cannot be replaced", field=unknown[0])
        if not changes:
            raise InvalidInput("nothing to replace: give at least one field to change")
        state = old.state
        order_id = state.order.id
        if state.status in (OrderStatus.PENDING_CANCEL, OrderStatus.PENDING_REPLACE):
            raise OrderNotReplaceable(
                f"order {order_id} is {state.status}", orderId=order_id, status=str(state.status)
            )
        if state.order.spec.notional is not None:
            raise OrderNotReplaceable("a notional order cannot be replaced", orderId=order_id)
        doc: dict[str, object] = {
            k: v for k, v in spec_to_doc(state.order.spec).items() if v is not None
        }
        doc.update(changes)
        spec = parse_order(doc).entry
        await self._charge(owner, limits)
        book = await self.user(owner)
        price = old.meta.estimate_price
        if state.order.role is LegRole.ENTRY:
            ctx = self._context(book, limits, spec.symbol, confirm, exclude=order_id)
            price = check_order(OrderRequest(spec, OrderClass.SIMPLE), ctx).price
        coid = changes.get("clientOrderId")
        replacement = Order(
            id=new_order_id(),
            spec=spec,
            created_ms=self.now_ms(),
            order_class=state.order.order_class,
            role=state.order.role,
            parent_id=state.order.parent_id,
            client_order_id=coid if isinstance(coid, str) else None,
            replaces=order_id,
        )
        meta = OrderMeta(
            owner, broker_name(self.broker, owner), price, old.meta.source, old.meta.alert_id
        )
        return OrderRecord(OrderState.of(replacement), meta)

    # -- reads ------------------------------------------------------------------------

    async def records(self, owner: str, ids: list[str]) -> list[OrderRecord]:
        """The orders, live from the book when open (fresher than the table by up to a
        commit), else as stored; another user's ids are left out."""
        out: dict[str, OrderRecord] = {}
        missing = []
        for i in ids:
            record = self.book.get(i)
            if record is not None and record.meta.owner == owner:
                out[i] = record
            else:
                missing.append(i)
        if missing:
            for record in await load_orders(self._pool, missing):
                if record.meta.owner == owner:
                    out[record.order.id] = record
        return [out[i] for i in ids if i in out]

    async def order(self, owner: str, order_id: str) -> OrderRecord | None:
        found = await self.records(owner, [order_id])
        return found[0] if found else None

    async def orders(
        self,
        owner: str,
        *,
        statuses: list[str] | None,
        symbol: str | None,
        after: tuple[int, str] | None,
        limit: int,
    ) -> list[OrderRecord]:
        page = await orders_page(
            self._pool, owner, statuses=statuses, symbol=symbol, after=after, limit=limit
        )
        return [self.book.get(r.order.id) or r for r in page]

    async def valuation(self, owner: str, limits: TierLimits) -> tuple[Decimal, Valuation]:
        book = await self.user(owner)
        account = book.account
        marks = self.market.marks(set(account.positions))
        return account.starting_cash, account.value(marks, limits.margin_multiplier)
