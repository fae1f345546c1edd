"""What brokers report: order events and fills, as immutable values.

Every broker (the paper engine, the Alpaca adapter) emits ``OrderEvent`` values; the
service appends them to the ledger and folds them into order state
(``server.trading.lifecycle``) and, for fills, into positions and the account
(``server.trading.account``). ``as_dict`` is the canonical JSON-safe form (decimals as
strings, absent values left out): the ledger can store it and the determinism test
compares it byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from server.trading.model import Side
from server.trading.states import EventKind, OrderStatus


class Reason(StrEnum):
    """Why an order was rejected, canceled or expired, or a request refused. Stable."""

    CANCEL_REQUESTED = "cancel_requested"
    IOC_REMAINDER = "ioc_remainder"  # IOC: what could not fill at once
    FOK_NOT_FILLABLE = "fok_not_fillable"  # FOK: not all of it at once
    NO_LIQUIDITY = "no_liquidity"  # IOC/FOK with no quote to take
    OCO_SIBLING_FILLED = "oco_sibling_filled"
    PARENT_CANCELED = "parent_canceled"  # a held leg whose entry ended without a fill
    DAY_ENDED = "day_ended"  # a DAY order at the end of its session
    GTC_MAX_AGE = "gtc_max_age"
    AUCTION_MISSED = "auction_missed"  # OPG/CLS not executable in its auction
    MARKET_CLOSED = "market_closed"  # needs an open session it does not have
    UNKNOWN_ORDER = "unknown_order"
    ALREADY_DONE = "already_done"  # a cancel/replace of an order that is done
    NOT_REPLACEABLE = "not_replaceable"  # its status or the change does not allow it
    REPLACED_ORDER_FILLED = "replaced_order_filled"  # the order filled before its replace
    DUPLICATE_ORDER_ID = "duplicate_order_id"
    BROKER_REJECTED = "broker_rejected"  # the broker refused it (its message is logged)
    BROKER_UNAVAILABLE = "broker_unavailable"  # it never reached the broker in time


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution. ``id`` is unique (``<order id>-<n>``, n counting the order's fills)."""

    id: str
    order_id: str
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal
    #: Fees charged for this fill (≥ 0, in dollars, to the cent).
    commission: Decimal
    time_ms: int

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "orderId": self.order_id,
            "symbol": self.symbol,
            "side": str(self.side),
            "qty": str(self.qty),
            "price": str(self.price),
            "commission": str(self.commission),
            "timeMs": self.time_ms,
        }


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """One change of one order.

    ``status`` is the order's status after the event (what ``next_status`` gives).
    ``qty`` is the order's quantity after it (``None`` for a notional order until it is
    done; a bracket leg's quantity is set when it activates; a replacement's is the new
    total minus what the replaced order had filled). ``filled_qty`` is cumulative.
    ``seq`` orders every event of one broker (a strictly increasing cursor).
    """

    seq: int
    kind: EventKind
    order_id: str
    status: OrderStatus
    time_ms: int
    qty: Decimal | None
    filled_qty: Decimal
    fill: Fill | None = None
    reason: Reason | None = None
    #: REPLACED: the new order; NEW of a replacement: the old one; CANCELED by OCO: the
    #: sibling that filled; a held leg's activation: its entry.
    related_order_id: str | None = None
    #: TRIGGERED: the stop price that triggered (for a trailing stop, the trailed stop).
    stop_price: Decimal | None = None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "seq": self.seq,
            "kind": str(self.kind),
            "orderId": self.order_id,
            "status": str(self.status),
            "timeMs": self.time_ms,
            "filledQty": str(self.filled_qty),
        }
        if self.qty is not None:
            out["qty"] = str(self.qty)
        if self.fill is not None:
            out["fill"] = self.fill.as_dict()
        if self.reason is not None:
            out["reason"] = str(self.reason)
        if self.related_order_id is not None:
            out["relatedOrderId"] = self.related_order_id
        if self.stop_price is not None:
            out["stopPrice"] = str(self.stop_price)
        return out
