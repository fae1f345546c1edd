"""Start-up: the book, the accounts and the broker rebuilt from the ledger, and every
request the broker may not have seen re-issued.

1. Each account is the fold of its fills in ledger order (``Account.apply``), from the
   starting cash stored with it.
2. Each open order's state is the fold of its ledger events (``fold_order``); the
   paper broker gets the acknowledged ones back (``restore``), so they keep working.
3. Each outbox row left by a crash is re-issued: a submit of orders the broker never
   acknowledged, a cancel or replace whose answer is not in the ledger. The broker
   ignores an order id it already has, so re-issuing is safe however far the crash got.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Protocol

import asyncpg

from brokers.port import Answer
from server.services.orders.current_books import accounts_and_fills
from server.services.orders.routing import resubmit, when_answered
from server.services.orders.service import OrderService
from server.storage.orders import load_open, pending_outbox
from server.trading.errors import InvalidTransition
from server.trading.events import Reason
from server.trading.lifecycle import OrderState, fold_order
from server.trading.model import Order
from server.trading.states import EventKind, OrderStatus

log = logging.getLogger(__name__)


class Restorable(Protocol):
    def restore(
        self, orders: list[tuple[Order, OrderState]], *, next_seq: int, now_ms: int
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class RestoreReport:
    accounts: int
    fills: int
    open_orders: int
    reissued: int


async def restore(pool: asyncpg.Pool, service: OrderService) -> RestoreReport:
    book = service.book
    broker = service.broker
    accounts, fills = await accounts_and_fills(pool, broker)
    for owner, cash in accounts.items():
        book.user(owner, cash)
        service.mark_loaded(owner)
    for owner, fill in fills:
        book.user(owner).account.apply(fill)
    working: list[tuple[Order, OrderState]] = []
    open_orders = await load_open(pool)
    next_seq = 1
    for record, events in open_orders:
        try:
            record.state = fold_order(record.order, events)
        except InvalidTransition:
            log.exception("order %s: its ledger does not fold; left as stored", record.order.id)
        book.add(record)
        next_seq = max([next_seq, *(e.seq + 1 for e in events)])
        if record.state.status is not OrderStatus.PENDING_NEW or events:
            working.append((record.order, record.state))
    if working and hasattr(broker, "restore"):
        restorable: Restorable = broker  # type: ignore[assignment]
        restorable.restore(working, next_seq=next_seq, now_ms=service.now_ms())
    reissued = await _reissue(pool, service)
    report = RestoreReport(len(accounts), len(fills), len(open_orders), reissued)
    log.info(
        "trading restored: %d accounts, %d fills, %d open orders, %d requests re-issued",
        report.accounts,
        report.fills,
        report.open_orders,
        report.reissued,
    )
    return report


async def _reissue(pool: asyncpg.Pool, service: OrderService) -> int:
    book = service.book
    broker = service.broker
    count = 0
    for outbox_id, _owner, kind, order_ids in await pending_outbox(pool):
        records = [book.get(i) for i in order_ids]
        answer: Answer = None
        if kind == "submit":
            # Orders the broker never acknowledged; the ones it did were restored.
            unseen = [
                r.order
                for r in records
                if r is not None and r.state.status is OrderStatus.PENDING_NEW
            ]
            if unseen:
                # A broker that can look an order up by our id does so before sending.
                answer = resubmit(broker, unseen)
                count += 1
        elif kind == "cancel" and records[0] is not None:
            record = records[0]
            if record.state.status is not OrderStatus.PENDING_CANCEL:
                service.on_request(record, EventKind.CANCEL_REQUESTED)
            if record.state.status is OrderStatus.PENDING_CANCEL:
                answer = broker.cancel(record.order.id)
                count += 1
        elif kind == "replace":
            old, new = records
            if new is not None and new.state.status is OrderStatus.PENDING_NEW:
                if old is None:  # the old order ended before the request reached the broker
                    service.on_request(new, EventKind.REJECTED, Reason.REPLACED_ORDER_FILLED)
                else:
                    if old.state.status is not OrderStatus.PENDING_REPLACE:
                        service.on_request(old, EventKind.REPLACE_REQUESTED)
                    if old.state.status is OrderStatus.PENDING_REPLACE:
                        answer = broker.replace(old.order.id, new.order)
                        count += 1
        when_answered(answer, functools.partial(service.ledger.answered, outbox_id))
    return count
