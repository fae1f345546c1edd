"""What happens to an order after it is placed: the venue's answers (accept, fill,
reject, cancel, expire...), the client's cancel and replace requests, and the trade
update each change emits.

Every change of state emits its trade update in the same step, so REST and the stream
always agree; an update with no listening connection is not kept for later (Alpaca
replays nothing), though ``events`` records everything emitted, for tests.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from tests.support.fake_alpaca.book import ZERO, Fill, Position
from tests.support.fake_alpaca.market import Market
from tests.support.fake_alpaca.orders import CANCELABLE, FILLABLE, REPLACEABLE, Order
from tests.support.fake_alpaca.validation import ReplaceSpec
from tests.support.fake_alpaca.wire import dec, invalid, ts, unprocessable

Listener = Callable[[dict[str, Any]], None]


class OrderLifecycle:
    """The part of an ``Account`` that moves orders through their states."""

    market: Market
    cash: Decimal
    #: Every order ever placed, legs included, in the order they were created.
    orders: dict[str, Order]
    by_client_order_id: dict[str, Order]
    positions: dict[str, Position]
    fills: list[Fill]
    #: Every trade update emitted, whether or not a stream was listening.
    events: list[dict[str, Any]]
    listeners: set[Listener]

    def _register(self, order: Order) -> None:
        self.orders[order.id] = order
        self.by_client_order_id[order.client_order_id] = order

    # --- the venue's answers (on submit, and from tests) --------------------------------

    def accept(self, order: Order) -> None:
        require(order, {"pending_new", "accepted"}, "accept")
        now = self.market.now_ns()
        order.status = "new"
        order.updated_ns = now
        self._emit("new", order, now)
        if order.type == "market" and self.market.rules.auto_fill_market:
            self.fill(order, None, order.asset.price)

    def reject(self, order: Order, reason: str) -> None:
        require(order, {"pending_new", "accepted", "new", "held"}, "reject")
        if order.filled_qty:
            raise ValueError(f"order {order.id} has fills; the venue cannot reject it")
        order.reject_reason = reason
        self._end(order, "rejected")

    def fill(self, order: Order, qty: Decimal | None, price: Decimal) -> None:
        require(order, FILLABLE, "fill")
        if (
            order.parent is not None
            and order.parent.status != "filled"
            and order.order_class != "oco"
        ):
            raise ValueError(f"order {order.id} is an exit whose entry has not filled")
        if price <= 0:
            raise ValueError("a fill needs a positive price")
        limit = order.limit_price
        through = limit is not None and (price > limit if order.side == "buy" else price < limit)
        if order.type in {"limit", "stop_limit"} and through:
            raise ValueError(f"{price} is through the limit {limit} of order {order.id}")
        remaining = order.remaining_qty(price)
        qty = remaining if qty is None else qty
        if not 0 < qty <= remaining:
            raise ValueError(f"cannot fill {qty} of order {order.id}: {remaining} remain")
        now = self.market.now_ns()
        position = self.positions.setdefault(order.symbol, Position(order.asset))
        signed = qty if order.side == "buy" else -qty
        position.apply(signed, price)
        if position.qty == 0:
            del self.positions[order.symbol]
        self.cash -= signed * price
        order.asset.price = price  # the mark follows the last execution
        order.filled_qty += qty
        order.filled_value += qty * price
        order.updated_ns = now
        complete = qty == remaining
        was = order.status
        if complete:
            order.status = "filled"
            order.filled_ns = now
        elif was not in {"pending_cancel", "pending_replace"}:
            order.status = "partially_filled"
        leaves = ZERO if complete else order.remaining_qty(price)
        self.fills.append(
            Fill(order, order.side, qty, price, now, order.filled_qty, leaves, order.status)
        )
        extra = {"price": dec(price), "qty": dec(qty), "position_qty": dec(position.qty)}
        self._emit("fill" if complete else "partial_fill", order, now, **extra)
        if not complete:
            return
        # A fill that completes the order beats a cancel or replace request in flight.
        if was == "pending_cancel":
            self._emit("order_cancel_rejected", order, self.market.now_ns())
        elif was == "pending_replace":
            self.reject_replace(order)
        self._after_filled(order)

    def _after_filled(self, order: Order) -> None:
        now = self.market.now_ns()
        if order.parent is None and order.order_class in {"bracket", "oto"}:
            # The entry filled: the exits go live. For a bracket the take-profit is
            # working at the venue and the stop-loss stays held at Alpaca (they form an
            # OCO pair); an OTO's one exit becomes new.
            for leg in order.legs:
                if leg.status == "held" and (leg.type == "limit" or len(order.legs) == 1):
                    leg.status = "new"
                    leg.updated_ns = now
                    self._emit("new", leg, now)
            return
        # One side of an OCO pair filled: the other is canceled.
        group = [order.root(), *order.root().legs] if order.order_class == "oco" else []
        if order.parent is not None and order.order_class == "bracket":
            group = list(order.parent.legs)
        for other in group:
            if other is not order and other.is_open:
                self._end(other, "canceled")

    def _end(self, order: Order, status: str) -> None:
        """A final status other than filled, with its own timestamp."""
        now = self.market.now_ns()
        order.status = status
        order.updated_ns = now
        stamp = {"canceled": "canceled_ns", "expired": "expired_ns", "rejected": "failed_ns"}
        setattr(order, stamp[status], now)
        self._emit(status, order, now)
        # Exits wait for their entry to fill completely; an entry that ends short of
        # that (even partly filled) takes them with it.
        for leg in order.legs:
            if leg.is_open:
                self._end(leg, "canceled")

    def end(self, order: Order, status: str) -> None:
        """The venue cancels or expires an open order."""
        require(order, CANCELABLE | {"pending_cancel", "pending_replace"}, status)
        if order.status == "pending_replace":
            self.reject_replace(order)
        self._end(order, status)

    def transition(self, order: Order, status: str) -> None:
        """A status that keeps the order open: ``done_for_day``, ``suspended``,
        ``calculated``, ``stopped``; the trade update has the status's name."""
        require(order, CANCELABLE, status)
        now = self.market.now_ns()
        order.status = status
        order.updated_ns = now
        self._emit(status, order, now)

    # --- cancel and replace ----------------------------------------------------------

    def request_cancel(self, order: Order) -> None:
        if order.status not in CANCELABLE:
            raise unprocessable("order is not cancelable")
        order.status_before_pending = order.status
        order.status = "pending_cancel"
        order.updated_ns = self.market.now_ns()
        self._emit("pending_cancel", order, order.updated_ns)
        if self.market.rules.auto_cancel:
            self.confirm_cancel(order)

    def confirm_cancel(self, order: Order) -> None:
        require(order, {"pending_cancel"}, "confirm the cancel of")
        self._end(order, "canceled")

    def reject_cancel(self, order: Order) -> None:
        require(order, {"pending_cancel"}, "reject the cancel of")
        order.status = order.status_before_pending or "new"
        order.updated_ns = self.market.now_ns()
        self._emit("order_cancel_rejected", order, order.updated_ns)

    def replace(self, order: Order, spec: ReplaceSpec) -> dict[str, Any]:
        """``PATCH /v2/orders/{id}``: a new order (new id) that ``replaces`` this one,
        which becomes ``replaced`` once the venue confirms. The answer is the new order.
        Its quantity is what is left to trade from now on: the unfilled rest unless the
        request says otherwise; fills stay on the old order."""
        if order.status not in REPLACEABLE:
            raise unprocessable("order is not replaceable")
        if order.type == "market" or order.notional is not None:
            raise unprocessable(f"{order.type} orders cannot be replaced")
        for name, allowed in (
            ("limit_price", {"limit", "stop_limit"}),
            ("stop_price", {"stop", "stop_limit"}),
            ("trail", {"trailing_stop"}),
        ):
            if getattr(spec, name) is not None and order.type not in allowed:
                raise invalid(f"{name} must not be given for {order.type} orders")
        client_order_id = spec.client_order_id or str(uuid.uuid4())
        if client_order_id in self.by_client_order_id:
            raise invalid("client_order_id must be unique")
        now = self.market.now_ns()
        new = dataclasses.replace(
            order,
            id=str(uuid.uuid4()),
            client_order_id=client_order_id,
            created_ns=now,
            updated_ns=now,
            qty=spec.qty or order.remaining_qty(order.asset.price),
            time_in_force=spec.time_in_force or order.time_in_force,
            limit_price=spec.limit_price or order.limit_price,
            stop_price=spec.stop_price or order.stop_price,
            status="pending_new",
            filled_ns=None,
            filled_qty=ZERO,
            filled_value=ZERO,
            replaces=order.id,
            legs=list(order.legs),
            status_before_pending=None,
            replacement=None,
        )
        if order.type == "trailing_stop" and spec.trail is not None:
            if order.trail_price is not None:
                new.trail_price = spec.trail
            else:
                new.trail_percent = spec.trail
            new.stop_price = trailing_stop_price(new)
        answer = new.to_json()
        self.request_replace(order, new)
        return answer

    def request_replace(self, order: Order, replacement: Order) -> None:
        order.status_before_pending = order.status
        order.status = "pending_replace"
        order.replacement = replacement
        order.updated_ns = replacement.created_ns
        self._register(replacement)
        self._emit("pending_replace", order, order.updated_ns)
        if self.market.rules.auto_replace:
            self.confirm_replace(order)

    def confirm_replace(self, order: Order) -> None:
        require(order, {"pending_replace"}, "confirm the replace of")
        new = order.replacement
        assert new is not None
        now = self.market.now_ns()
        before = order.status_before_pending
        order.status = "replaced"
        order.replaced_ns = order.updated_ns = now
        order.replaced_by = new.id
        order.replacement = None
        self._emit("replaced", order, now)
        if order.parent is not None:
            legs = order.parent.legs
            legs[legs.index(order)] = new
        for leg in new.legs:
            leg.parent = new
        new.status = before if before in {"held", "accepted"} else "new"
        new.updated_ns = self.market.now_ns()
        self._emit("new", new, new.updated_ns)

    def reject_replace(self, order: Order) -> None:
        new = order.replacement
        if order.status == "pending_replace":
            order.status = order.status_before_pending or "new"
        order.replacement = None
        order.updated_ns = self.market.now_ns()
        self._emit("order_replace_rejected", order, order.updated_ns)
        if new is not None:
            new.legs = []
            self._end(new, "rejected")

    # --- the stream ------------------------------------------------------------------

    def _emit(self, event: str, order: Order, now: int, **extra: str) -> None:
        data: dict[str, Any] = {
            "event": event,
            "execution_id": str(uuid.uuid4()),
            "order": order.to_json(),
            "timestamp": ts(now),
            **extra,
        }
        message = {"stream": "trade_updates", "data": data}
        self.events.append(message)
        for listener in list(self.listeners):
            listener(message)

    def event_names(self, order: Order | None = None) -> list[str]:
        """The trade update events emitted so far (for one order, or all)."""
        return [
            m["data"]["event"]
            for m in self.events
            if order is None or m["data"]["order"]["id"] == order.id
        ]


def trailing_stop_price(order: Order) -> Decimal:
    hwm = order.hwm
    assert hwm is not None
    if order.trail_price is not None:
        offset = order.trail_price
    else:
        assert order.trail_percent is not None
        offset = (hwm * order.trail_percent / 100).quantize(Decimal("0.01"))
    return hwm - offset if order.side == "sell" else hwm + offset


def require(order: Order, statuses: Iterable[str], action: str) -> None:
    if order.status not in set(statuses):
        raise ValueError(f"cannot {action} order {order.id}: it is {order.status}")
