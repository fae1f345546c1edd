"""One Alpaca account: its orders, fills, positions and cash, what the REST API asks of
it, and the trade updates it emits.

Every change of state emits its trade update in the same step, so REST and the stream
always agree; an update with no listening connection is not kept for later (Alpaca
replays nothing), though ``events`` records everything emitted, for tests.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from typing import Any

from tests.support.fake_alpaca.book import ZERO, Balances, Fill, Position, balances
from tests.support.fake_alpaca.market import Market
from tests.support.fake_alpaca.orders import CANCELABLE, FILLABLE, REPLACEABLE, Order
from tests.support.fake_alpaca.validation import OrderSpec, ReplaceSpec
from tests.support.fake_alpaca.wire import (
    CODE_FORBIDDEN,
    AlpacaError,
    dec,
    invalid,
    ts,
    unprocessable,
)

Listener = Callable[[dict[str, Any]], None]


class Account:
    def __init__(
        self,
        market: Market,
        key_id: str,
        secret: str,
        *,
        cash: Decimal,
        multiplier: Decimal,
        shorting_enabled: bool,
    ) -> None:
        self.market = market
        self.key_id = key_id
        self.secret = secret
        self.id = str(uuid.uuid4())
        self.account_number = f"PA{uuid.uuid4().int % 10**10:010d}"
        self.created_ns = market.now_ns()
        self.cash = cash
        self.last_equity = cash
        self.multiplier = multiplier
        self.shorting_enabled = shorting_enabled
        #: Every order ever placed, legs included, in the order they were created.
        self.orders: dict[str, Order] = {}
        self.by_client_order_id: dict[str, Order] = {}
        self.positions: dict[str, Position] = {}
        self.fills: list[Fill] = []
        #: Every trade update emitted, whether or not a stream was listening.
        self.events: list[dict[str, Any]] = []
        self.listeners: set[Listener] = set()
        self.reject_reasons: deque[str] = deque()

    # --- orders in -------------------------------------------------------------------

    def submit(self, spec: OrderSpec) -> tuple[Order, dict[str, Any]]:
        """``POST /v2/orders``: the order and the answer, which shows the order as it was
        when Alpaca took it (``pending_new``, or ``accepted`` with the market closed);
        the venue's acknowledgement follows as a trade update."""
        client_order_id = spec.client_order_id or str(uuid.uuid4())
        if client_order_id in self.by_client_order_id:
            raise invalid("client_order_id must be unique")
        self._check_affordable(spec)
        now = self.market.now_ns()
        order = self._new_order(spec, client_order_id, now)
        for leg in order.legs:
            self._register(leg)
        self._register(order)
        self._emit(order.status, order, now)
        answer = order.to_json()
        if self.reject_reasons:
            self.reject(order, self.reject_reasons.popleft())
        elif self.market.is_open and self.market.rules.auto_accept:
            self.accept(order)
        return order, answer

    def _new_order(self, spec: OrderSpec, client_order_id: str, now: int) -> Order:
        asset = spec.asset
        order = Order(
            id=str(uuid.uuid4()),
            client_order_id=client_order_id,
            asset=asset,
            side=spec.side,
            type=spec.type,
            time_in_force=spec.time_in_force,
            order_class=spec.order_class,
            created_ns=now,
            qty=spec.qty,
            notional=spec.notional,
            limit_price=spec.limit_price,
            stop_price=spec.stop_price,
            trail_price=spec.trail_price,
            trail_percent=spec.trail_percent,
            extended_hours=spec.extended_hours,
            position_intent=spec.position_intent or self._intent(spec.side, asset.symbol),
            status="pending_new" if self.market.is_open else "accepted",
        )
        if order.type == "trailing_stop":
            order.hwm = asset.price
            order.stop_price = trailing_stop_price(order)
        exit_side = "sell" if spec.side == "buy" else "buy"
        if spec.order_class == "oco":
            exit_side = spec.side  # the OCO order is itself the take-profit exit
        if spec.take_profit is not None and spec.order_class != "oco":
            order.legs.append(self._leg(order, exit_side, "limit", now, limit=spec.take_profit))
        if spec.stop_loss is not None:
            stop, limit = spec.stop_loss
            kind = "stop" if limit is None else "stop_limit"
            order.legs.append(self._leg(order, exit_side, kind, now, stop=stop, limit=limit))
        return order

    def _leg(
        self,
        parent: Order,
        side: str,
        type_: str,
        now: int,
        *,
        limit: Decimal | None = None,
        stop: Decimal | None = None,
    ) -> Order:
        return Order(
            id=str(uuid.uuid4()),
            client_order_id=str(uuid.uuid4()),
            asset=parent.asset,
            side=side,
            type=type_,
            time_in_force=parent.time_in_force,
            order_class=parent.order_class,
            created_ns=now,
            qty=parent.qty,
            limit_price=limit,
            stop_price=stop,
            position_intent="sell_to_close" if side == "sell" else "buy_to_close",
            status="held",
            parent=parent,
        )

    def _register(self, order: Order) -> None:
        self.orders[order.id] = order
        self.by_client_order_id[order.client_order_id] = order

    def _intent(self, side: str, symbol: str) -> str:
        held = self.positions.get(symbol)
        qty = held.qty if held else ZERO
        if side == "buy":
            return "buy_to_close" if qty < 0 else "buy_to_open"
        return "sell_to_close" if qty > 0 else "sell_to_open"

    # --- what the account can afford -------------------------------------------------

    def held_for_orders(self, symbol: str, side: str) -> Decimal:
        """Quantity promised to open orders on ``side``: an order's unfilled rest, and
        once an entry has filled, its exit legs (counted once: they close one
        position)."""
        total = ZERO
        for order in self.orders.values():
            if order.symbol != symbol or order.parent is not None:
                continue
            price = order.asset.price
            if order.is_open and order.side == side:
                total += order.remaining_qty(price)
            live_exits = [leg for leg in order.legs if leg.is_open and leg.side == side]
            if order.status == "filled" and live_exits:
                total += max(leg.remaining_qty(price) for leg in live_exits)
        return total

    def _reserved(self) -> Decimal:
        """Buying power held by open buy orders (entries only)."""
        total = ZERO
        for order in self.orders.values():
            if order.parent is None and order.is_open and order.side == "buy":
                price = order.limit_price or order.stop_price or order.asset.price
                total += order.remaining_qty(price) * price
        return total

    def balances(self) -> Balances:
        return balances(self.cash, list(self.positions.values()), self._reserved(), self.multiplier)

    def _check_affordable(self, spec: OrderSpec) -> None:
        asset = spec.asset
        price = spec.limit_price or spec.stop_price or asset.price
        qty = spec.qty if spec.qty is not None else (spec.notional or ZERO) / price
        held = self.positions.get(asset.symbol)
        position = held.qty if held else ZERO
        if spec.side == "sell":
            held_qty = self.held_for_orders(asset.symbol, "sell")
            available = max(position, ZERO) - held_qty
            short = qty - max(available, ZERO)
            if short > 0 and not (
                self.shorting_enabled
                and self.multiplier > 1
                and asset.shortable
                and qty == qty.to_integral_value()  # no fractional short sales
            ):
                raise insufficient_qty(asset.symbol, qty, available, position, held_qty)
            cost = max(short, ZERO) * price
        else:
            covering = min(qty, max(-position, ZERO))
            cost = (qty - covering) * price
        buying_power = self.balances().buying_power
        if cost > buying_power:
            raise AlpacaError(
                403,
                CODE_FORBIDDEN,
                "insufficient buying power",
                buying_power=dec(buying_power),
                cost_basis=dec(cost),
            )

    # --- the venue's answers (called on submit, and by tests) -------------------------

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

    # --- reading ---------------------------------------------------------------------

    def roots(self) -> Iterator[Order]:
        return (o for o in self.orders.values() if o.parent is None)

    def open_orders(self) -> list[Order]:
        return [o for o in self.roots() if o.is_open]

    def to_json(self) -> dict[str, Any]:
        b = self.balances()
        return {
            "id": self.id,
            "admin_configurations": {},
            "user_configurations": None,
            "account_number": self.account_number,
            "status": "ACTIVE",
            "crypto_status": "INACTIVE",
            "options_approved_level": 0,
            "options_trading_level": 0,
            "currency": "USD",
            "buying_power": dec(b.buying_power),
            "regt_buying_power": dec(b.regt_buying_power),
            "daytrading_buying_power": "0",
            "effective_buying_power": dec(b.buying_power),
            "non_marginable_buying_power": dec(max(ZERO, b.cash - self._reserved())),
            "options_buying_power": "0",
            "bod_dtbp": "0",
            "cash": dec(b.cash),
            "accrued_fees": "0",
            "pending_transfer_in": "0",
            "portfolio_value": dec(b.equity),
            "pattern_day_trader": False,
            "trading_blocked": False,
            "transfers_blocked": False,
            "account_blocked": False,
            "created_at": ts(self.created_ns),
            "trade_suspended_by_user": False,
            "multiplier": dec(self.multiplier),
            "shorting_enabled": self.shorting_enabled,
            "equity": dec(b.equity),
            "last_equity": dec(self.last_equity),
            "long_market_value": dec(b.long_market_value),
            "short_market_value": dec(b.short_market_value),
            "position_market_value": dec(b.long_market_value - b.short_market_value),
            "initial_margin": dec(b.initial_margin),
            "maintenance_margin": dec(b.maintenance_margin),
            "last_maintenance_margin": "0",
            "sma": "0",
            "daytrade_count": 0,
            "crypto_tier": 0,
            "intraday_adjustments": "0",
            "pending_reg_taf_fees": "0",
        }

    def position_json(self, position: Position) -> dict[str, Any]:
        side = "sell" if position.qty > 0 else "buy"
        return position.to_json(self.held_for_orders(position.asset.symbol, side))

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


def insufficient_qty(
    symbol: str, requested: Decimal, available: Decimal, position: Decimal, held: Decimal
) -> AlpacaError:
    """Alpaca's 403 for selling (or closing) more than the position has free."""
    available = max(available, ZERO)
    return AlpacaError(
        403,
        CODE_FORBIDDEN,
        f"insufficient qty available for order (requested: {dec(requested)}, "
        f"available: {dec(available)})",
        available=dec(available),
        existing_qty=dec(position),
        held_for_orders=dec(held),
        symbol=symbol,
    )


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
