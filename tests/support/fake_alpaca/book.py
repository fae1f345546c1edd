"""Positions, fills and balances of one account, from fills alone, in ``Decimal``.

The margin model is Reg T's, simplified: with ``multiplier`` 2 the initial margin is
half the gross position value and ``buying_power = 2 * (equity - initial_margin)``;
with ``multiplier`` 1 (a cash account) buying power is the cash. Open buy orders hold
buying power until they fill or end, as on Alpaca. No day-trading buying power, no
pattern-day-trader rules, no fees.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from tests.support.fake_alpaca.orders import PRICE_PLACES, Asset, Order
from tests.support.fake_alpaca.wire import dec, ts

PL_PLACES = Decimal("1e-16")
ZERO = Decimal(0)


@dataclass
class Position:
    asset: Asset
    qty: Decimal = ZERO  # signed: negative is short
    avg_entry_price: Decimal = ZERO

    def apply(self, signed_qty: Decimal, price: Decimal) -> None:
        """A fill of ``signed_qty`` (positive bought) at ``price``: extending the
        position moves the average entry price, reducing it keeps it, crossing zero
        starts a new one at ``price``."""
        old = self.qty
        new = old + signed_qty
        if old == 0 or (old > 0) == (signed_qty > 0):
            cost = abs(old) * self.avg_entry_price + abs(signed_qty) * price
            self.avg_entry_price = (cost / abs(new)).quantize(PRICE_PLACES, ROUND_HALF_EVEN)
        elif new != 0 and (new > 0) != (old > 0):
            self.avg_entry_price = price
        self.qty = new

    @property
    def market_value(self) -> Decimal:
        return self.qty * self.asset.price

    def to_json(self, held_for_orders: Decimal) -> dict[str, Any]:
        price = self.asset.price
        lastday = self.asset.lastday_price or price
        cost_basis = self.qty * self.avg_entry_price
        unrealized = self.market_value - cost_basis
        plpc = (unrealized / abs(cost_basis)).quantize(PL_PLACES) if cost_basis else ZERO
        change = ((price - lastday) / lastday).quantize(PL_PLACES) if lastday else ZERO
        return {
            "asset_id": self.asset.id,
            "symbol": self.asset.symbol,
            "exchange": self.asset.exchange,
            "asset_class": self.asset.asset_class,
            "asset_marginable": self.asset.marginable,
            "qty": dec(self.qty),
            "qty_available": dec(abs(self.qty) - held_for_orders),
            "avg_entry_price": dec(self.avg_entry_price),
            "side": "long" if self.qty > 0 else "short",
            "market_value": dec(self.market_value),
            "cost_basis": dec(cost_basis),
            "unrealized_pl": dec(unrealized),
            "unrealized_plpc": dec(plpc),
            # Every position of the fake was opened in today's session.
            "unrealized_intraday_pl": dec(unrealized),
            "unrealized_intraday_plpc": dec(plpc),
            "current_price": dec(price),
            "lastday_price": dec(lastday),
            "change_today": dec(change),
        }


@dataclass(frozen=True)
class Fill:
    """One execution, as ``GET /v2/account/activities/FILL`` lists it."""

    order: Order
    side: str
    qty: Decimal
    price: Decimal
    ns: int
    cum_qty: Decimal
    leaves_qty: Decimal
    order_status: str
    execution_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def activity_id(self) -> str:
        # Alpaca's activity ids sort by time: "20220203000000000::<uuid>".
        moment = datetime.fromtimestamp(self.ns // 1_000_000_000, UTC)
        millis = self.ns // 1_000_000 % 1000
        return f"{moment:%Y%m%d%H%M%S}{millis:03d}::{self.execution_id}"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.activity_id,
            "activity_type": "FILL",
            "transaction_time": ts(self.ns),
            "type": "fill" if self.order_status == "filled" else "partial_fill",
            "price": dec(self.price),
            "qty": dec(self.qty),
            "side": self.side,
            "symbol": self.order.symbol,
            "leaves_qty": dec(self.leaves_qty),
            "order_id": self.order.id,
            "cum_qty": dec(self.cum_qty),
            "order_status": self.order_status,
        }


@dataclass(frozen=True)
class Balances:
    cash: Decimal
    equity: Decimal
    long_market_value: Decimal
    short_market_value: Decimal
    initial_margin: Decimal
    maintenance_margin: Decimal
    buying_power: Decimal
    regt_buying_power: Decimal


def balances(
    cash: Decimal, positions: list[Position], reserved: Decimal, multiplier: Decimal
) -> Balances:
    long_mv = sum((p.market_value for p in positions if p.qty > 0), ZERO)
    short_mv = sum((p.market_value for p in positions if p.qty < 0), ZERO)
    equity = cash + long_mv + short_mv
    gross = long_mv - short_mv
    if multiplier > 1:
        initial = gross / 2
        regt = max(ZERO, multiplier * (equity - initial))
    else:
        initial = gross
        regt = max(ZERO, cash)
    return Balances(
        cash=cash,
        equity=equity,
        long_market_value=long_mv,
        short_market_value=short_mv,
        initial_margin=initial,
        maintenance_margin=gross * Decimal("0.3"),
        buying_power=max(ZERO, regt - reserved),
        regt_buying_power=regt,
    )
