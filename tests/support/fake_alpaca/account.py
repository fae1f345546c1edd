"""One Alpaca account: its orders, fills, positions and cash; placing an order (with
what the account can afford) and the account's JSON. What happens to orders once
placed is ``lifecycle.OrderLifecycle``."""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from tests.support.fake_alpaca.book import ZERO, Balances, Position, balances
from tests.support.fake_alpaca.lifecycle import OrderLifecycle, trailing_stop_price
from tests.support.fake_alpaca.market import Market
from tests.support.fake_alpaca.orders import Order
from tests.support.fake_alpaca.validation import OrderSpec
from tests.support.fake_alpaca.wire import CODE_FORBIDDEN, AlpacaError, dec, invalid, ts


class Account(OrderLifecycle):
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
        self.orders = {}
        self.by_client_order_id = {}
        self.positions = {}
        self.fills = []
        self.events = []
        self.listeners = set()
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
