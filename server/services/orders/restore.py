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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import asyncpg

from brokers.port import Answer
from server.services.orders.current_books import accounts_and_fills
from server.services.orders.routing import resubmit, when_answered
from server.services.orders.service import OrderService
from server.storage.order_reads import (
    ledger_extent,
    load_open,
    load_related,
    pending_outbox,
)
from server.storage.order_rows import OrderRecord
from server.trading.errors import (
    InvalidTransition,
    OrderNotCancelable,
    OrderNotFound,
    OrderNotReplaceable,
)
from server.trading.events import OrderEvent, Reason
from server.trading.lifecycle import fold_order
from server.trading.model import Order
from server.trading.states import EventKind, OrderStatus

log = logging.getLogger(__name__)


class Restorable(Protocol):
    """A broker that keeps its orders in this process (the paper broker)."""

    def restore(
        self,
        ledger: Iterable[tuple[Order, Sequence[OrderEvent]]],
        *,
        next_seq: int,
        now_ms: int,
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
    # Each user's book is the account of the broker they trade with now.
    accounts, fills = await accounts_and_fills(pool, broker)
    for owner, cash in accounts.items():
        book.user(owner, cash)
        service.mark_loaded(owner)
    for owner, fill in fills:
        book.user(owner).account.apply(fill)
    open_orders = await load_open(pool)
    for record, events in open_orders:
        try:
            record.state = fold_order(record.order, events)
        except InvalidTransition:
            log.exception("order %s: its ledger does not fold; left as stored", record.order.id)
        book.add(record)
    if open_orders and hasattr(broker, "restore"):
        await _restore_broker(pool, service, open_orders)
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


async def _restore_broker(
    pool: asyncpg.Pool,
    service: OrderService,
    open_orders: list[tuple[OrderRecord, list[OrderEvent]]],
) -> None:
    """The paper engine takes its working orders back from their ledgers, with the done
    orders they refer to; its seq continues above every seq it used. Its clock: the
    wall clock for a live feed, the ledger's last time for a replay (the replay's clock
    is unknown until it plays again, and must not jump to today)."""
    related = await load_related(pool, [r.order.id for r, _ in open_orders])
    ledger = [(r.order, events) for r, events in [*related, *open_orders]]
    ledger.sort(key=lambda item: (item[0].created_ms, item[0].id))
    last_seq, last_ms = await ledger_extent(pool)
    now_ms = service.now_ms() if service.config.live or not last_ms else last_ms
    restorable: Restorable = service.broker  # type: ignore[assignment]
    restorable.restore(ledger, next_seq=last_seq + 1, now_ms=now_ms)


async def _reissue(pool: asyncpg.Pool, service: OrderService) -> int:
    """Re-issue every outbox row. A broker error on one row never stops the start-up:
    a request the broker refuses on the spot is answered in the ledger as refused (the
    order keeps its status), anything else is logged and the row kept for next time."""
    count = 0
    for outbox_id, _owner, kind, order_ids in await pending_outbox(pool):
        answered = functools.partial(service.ledger.answered, outbox_id)
        try:
            reissued, answer = _reissue_one(service, kind, order_ids)
        except (OrderNotFound, OrderNotCancelable, OrderNotReplaceable) as exc:
            _refused(service, kind, order_ids, exc)
            answered()
            continue
        except Exception:
            log.exception("could not re-issue %s of %s; kept for the next start", kind, order_ids)
            continue
        count += reissued
        # An asynchronous broker's answer comes later: the row goes only then.
        when_answered(answer, answered)
    return count


def _reissue_one(service: OrderService, kind: str, order_ids: list[str]) -> tuple[int, Answer]:
    book = service.book
    broker = service.broker
    records = [book.get(i) for i in order_ids]
    if kind == "submit":
        # Orders the broker never acknowledged; the ones it did were restored.
        unseen = [
            r.order for r in records if r is not None and r.state.status is OrderStatus.PENDING_NEW
        ]
        if unseen:
            # A broker that can look an order up by our id does so before sending.
            return 1, resubmit(broker, unseen)
    elif kind == "cancel" and records[0] is not None:
        record = records[0]
        if record.state.status is not OrderStatus.PENDING_CANCEL:
            service.on_request(record, EventKind.CANCEL_REQUESTED)
        if record.state.status is OrderStatus.PENDING_CANCEL:
            return 1, broker.cancel(record.order.id)
    elif kind == "replace":
        old, new = records
        if new is not None and new.state.status is OrderStatus.PENDING_NEW:
            if old is None:  # the old order ended before the request reached the broker
                service.on_request(new, EventKind.REJECTED, Reason.REPLACED_ORDER_FILLED)
                return 0, None
            if old.state.status is not OrderStatus.PENDING_REPLACE:
                service.on_request(old, EventKind.REPLACE_REQUESTED)
            if old.state.status is OrderStatus.PENDING_REPLACE:
                return 1, broker.replace(old.order.id, new.order)
    return 0, None


def _refused(service: OrderService, kind: str, order_ids: list[str], exc: Exception) -> None:
    """The broker refused a re-issued cancel or replace on the spot: the order goes back
    to where it was (``cancel_rejected``/``replace_rejected``), a replacement is rejected."""
    log.warning("broker refused the re-issued %s of %s: %s", kind, order_ids, exc)
    book = service.book
    first = book.get(order_ids[0])
    if kind == "cancel" and first is not None:
        service.on_request(first, EventKind.CANCEL_REJECTED, Reason.UNKNOWN_ORDER)
    elif kind == "replace":
        if first is not None:
            service.on_request(first, EventKind.REPLACE_REJECTED, Reason.NOT_REPLACEABLE)
        new = book.get(order_ids[1])
        if new is not None:
            service.on_request(new, EventKind.REJECTED, Reason.NOT_REPLACEABLE)
