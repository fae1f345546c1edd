"""Assets and orders as the fake keeps them, and their JSON as Alpaca renders it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from tests.support.fake_alpaca.wire import dec, opt_dec, opt_ts, ts

#: Statuses ``GET /v2/orders?status=open`` lists; the rest are closed (final).
OPEN_STATUSES = frozenset(
    {
        "new",
        "partially_filled",
        "done_for_day",
        "accepted",
        "pending_new",
        "pending_cancel",
        "pending_replace",
        "held",
        "accepted_for_bidding",
        "stopped",
        "calculated",
        "suspended",
    }
)
CLOSED_STATUSES = frozenset({"filled", "canceled", "expired", "replaced", "rejected"})
#: A cancel or replace request already in flight blocks another one.
CANCELABLE = OPEN_STATUSES - {"pending_cancel", "pending_replace"}
REPLACEABLE = frozenset({"new", "accepted", "partially_filled", "held", "done_for_day"})
#: What the venue may still execute; a fill can race a cancel or replace request.
FILLABLE = OPEN_STATUSES - {"pending_new", "accepted", "accepted_for_bidding", "suspended"}

PRICE_PLACES = Decimal("1e-10")


@dataclass
class Asset:
    symbol: str
    price: Decimal  # the mark: what market orders are checked (and auto-filled) against
    exchange: str = "NASDAQ"
    name: str = ""
    tradable: bool = True
    marginable: bool = True
    shortable: bool = True
    easy_to_borrow: bool = True
    fractionable: bool = True
    asset_class: str = "us_equity"
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    #: Yesterday's close, for ``lastday_price`` and ``change_today``: the first mark.
    lastday_price: Decimal | None = None

    def __post_init__(self) -> None:
        if self.lastday_price is None:
            self.lastday_price = self.price

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "class": self.asset_class,
            "exchange": self.exchange,
            "symbol": self.symbol,
            "name": self.name or f"{self.symbol} Common Stock",
            "status": "active" if self.tradable else "inactive",
            "tradable": self.tradable,
            "marginable": self.marginable,
            "maintenance_margin_requirement": 30,
            "shortable": self.shortable,
            "easy_to_borrow": self.easy_to_borrow,
            "fractionable": self.fractionable,
            "attributes": ["fractional_eh_enabled"] if self.fractionable else [],
        }


@dataclass
class Order:
    id: str
    client_order_id: str
    asset: Asset
    side: str
    type: str
    time_in_force: str
    order_class: str
    created_ns: int
    qty: Decimal | None = None
    notional: Decimal | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trail_price: Decimal | None = None
    trail_percent: Decimal | None = None
    hwm: Decimal | None = None
    extended_hours: bool = False
    position_intent: str | None = None
    status: str = "pending_new"
    updated_ns: int = 0
    filled_ns: int | None = None
    expired_ns: int | None = None
    canceled_ns: int | None = None
    failed_ns: int | None = None
    replaced_ns: int | None = None
    replaced_by: str | None = None
    replaces: str | None = None
    filled_qty: Decimal = Decimal(0)
    filled_value: Decimal = Decimal(0)
    legs: list[Order] = field(default_factory=list)
    parent: Order | None = field(default=None, repr=False)
    #: The status a pending cancel or replace returns to when the venue refuses it.
    status_before_pending: str | None = None
    #: The order a pending replace will become (already visible over REST).
    replacement: Order | None = field(default=None, repr=False)
    #: Why the venue rejected it; Alpaca's ``rejected`` event carries no reason.
    reject_reason: str | None = None

    def __post_init__(self) -> None:
        self.updated_ns = self.updated_ns or self.created_ns

    @property
    def symbol(self) -> str:
        return self.asset.symbol

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def filled_avg_price(self) -> Decimal | None:
        if not self.filled_qty:
            return None
        return (self.filled_value / self.filled_qty).quantize(PRICE_PLACES, ROUND_HALF_EVEN)

    def remaining_qty(self, price: Decimal) -> Decimal:
        """What is left to fill; for a notional order, at ``price``."""
        if self.qty is not None:
            return self.qty - self.filled_qty
        assert self.notional is not None
        left = (self.notional - self.filled_value) / price
        return left.quantize(Decimal("1e-9"), rounding="ROUND_DOWN")

    def root(self) -> Order:
        return self.parent if self.parent is not None else self

    def to_json(self, *, nested: bool = True) -> dict[str, Any]:
        """The order object of every REST answer and trade update. ``legs`` is null for
        a simple order, or when not ``nested``."""
        return {
            "id": self.id,
            "client_order_id": self.client_order_id,
            "created_at": ts(self.created_ns),
            "updated_at": ts(self.updated_ns),
            "submitted_at": ts(self.created_ns),
            "filled_at": opt_ts(self.filled_ns),
            "expired_at": opt_ts(self.expired_ns),
            "expires_at": None,
            "canceled_at": opt_ts(self.canceled_ns),
            "failed_at": opt_ts(self.failed_ns),
            "replaced_at": opt_ts(self.replaced_ns),
            "replaced_by": self.replaced_by,
            "replaces": self.replaces,
            "asset_id": self.asset.id,
            "symbol": self.asset.symbol,
            "asset_class": self.asset.asset_class,
            "notional": opt_dec(self.notional),
            "qty": opt_dec(self.qty),
            "filled_qty": dec(self.filled_qty),
            "filled_avg_price": opt_dec(self.filled_avg_price),
            "order_class": self.order_class,
            "order_type": self.type,
            "type": self.type,
            "side": self.side,
            "position_intent": self.position_intent,
            "time_in_force": self.time_in_force,
            "limit_price": opt_dec(self.limit_price),
            "stop_price": opt_dec(self.stop_price),
            "status": self.status,
            "extended_hours": self.extended_hours,
            "legs": [leg.to_json(nested=False) for leg in self.legs]
            if nested and self.legs
            else None,
            "trail_percent": opt_dec(self.trail_percent),
            "trail_price": opt_dec(self.trail_price),
            "hwm": opt_dec(self.hwm),
            "subtag": None,
            "source": None,
        }
