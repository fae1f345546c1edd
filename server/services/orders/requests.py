"""What a request to the order service is: its configuration, ids, the digest that
makes two requests "the same" for an idempotency key, and an order checked and
reserved but not stored yet (``Prepared``)."""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, field
from decimal import Decimal

import asyncpg
import orjson

from server.storage.order_rows import OrderMeta, OrderRecord, spec_to_doc
from server.storage.orders import insert_request
from server.trading.calendar import NYSE, Calendar
from server.trading.model import Order, OrderRequest
from server.trading.risk import RiskConfig

IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")
#: What ``replaceOrder`` may change.
REPLACEABLE = frozenset(
    {"qty", "limitPrice", "stopPrice", "trailPrice", "trailPercent", "timeInForce"}
)


@dataclass(frozen=True, slots=True)
class TradingConfig:
    #: Cash a new paper account starts with.
    starting_cash: Decimal = Decimal(100_000)
    risk: RiskConfig = field(default_factory=RiskConfig)
    calendar: Calendar = NYSE
    #: How long ``placeOrder`` waits for the broker's answer to be committed.
    commit_timeout_s: float = 5.0
    #: The feed is live (its clock is the wall clock), not a replay.
    live: bool = True


def new_order_id() -> str:
    return uuid.uuid4().hex


def request_digest(request: OrderRequest) -> bytes:
    """What makes two requests "the same" for an idempotency key."""
    doc = {
        "entry": spec_to_doc(request.entry),
        "class": str(request.order_class),
        "tp": None if request.take_profit is None else str(request.take_profit.limit_price),
        "sl": None
        if request.stop_loss is None
        else [str(request.stop_loss.stop_price), str(request.stop_loss.limit_price)],
        "coid": request.client_order_id,
    }
    return hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).digest()


@dataclass(frozen=True, slots=True)
class Prepared:
    """Orders checked and reserved, not yet stored."""

    orders: tuple[Order, ...]
    records: list[OrderRecord]
    meta: OrderMeta
    digest: bytes

    async def insert(self, db: asyncpg.Pool | asyncpg.Connection) -> int | None:
        """Insert the orders and their outbox row (in ``db``'s transaction, if it is a
        connection in one); ``None`` when a unique index refused them (the key or a
        client order id is taken)."""
        return await insert_request(
            db, self.orders, [self.meta] * len(self.orders), digest=self.digest
        )
