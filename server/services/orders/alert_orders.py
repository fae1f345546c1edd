"""Alerts that trade: an alert may carry an order template, placed when it fires.

The order is created in the same transaction as the firing record (``AlertDelivery``
calls ``prepare`` before its group commit, ``insert`` inside it and ``submit`` after
it), so a restart neither loses it nor places it twice:

- a firing written again (a retry, a re-evaluation after a restart) is not new, so its
  order is not inserted; the order's idempotency key ``alert:<alert id>:<firing key>``
  backs that up with a unique index;
- a commit that fails releases the reservation; the retry prepares afresh.

Risk checks run at firing time, against the account as it is then. A refused order is
recorded on the firing (``payload.order.rejected``: its code and message) and so
delivered on ``alertEvents``; an accepted one's id is (``payload.order.id``). Alert
orders are not charged to the tier's order rate: the alert's firing rate bounds them.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Any

import asyncpg

from server.errors import TickgraphError
from server.limits.tiers import TierLimits
from server.services.orders.requests import Prepared
from server.services.orders.service import OrderService
from server.trading.validation import parse_order

log = logging.getLogger(__name__)

Key = tuple[uuid.UUID, str]  # (alert id, firing dedup key)


@dataclass(frozen=True, slots=True)
class Rejection:
    code: str
    message: str


def idempotency_key(alert_id: uuid.UUID, dedup_key: str) -> str:
    """At most 128 printable characters (a dedup key is short; cut for safety)."""
    return f"alert:{alert_id}:{dedup_key}"[:128]


def _json(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    return value


class AlertOrders:
    def __init__(self, service: OrderService, limits_for: Callable[[str], TierLimits]) -> None:
        self._service = service
        self._limits_for = limits_for
        #: Each armed alert's order template (the placeOrder input document).
        self.templates: dict[uuid.UUID, dict[str, Any]] = {}

    @staticmethod
    def validate(template: Mapping[str, Any]) -> dict[str, Any]:
        """Check a template when the alert is created or changed (the market checks
        wait for the firing); returns it as stored: JSON, decimals as strings."""
        stored: dict[str, Any] = _json(template)
        try:
            parse_order(stored)
        except TickgraphError as exc:
            field = exc.extensions.get("field")
            if field is not None:
                exc.extensions["field"] = f"order.{field}"
            raise
        return stored

    async def arm(self, alert_id: uuid.UUID, owner: str, template: dict[str, Any] | None) -> None:
        if template is None:
            self.templates.pop(alert_id, None)
            return
        await self._service.user(owner)  # the account exists before anything fires
        self.templates[alert_id] = template

    def disarm(self, alert_id: uuid.UUID) -> None:
        self.templates.pop(alert_id, None)

    def prepare(self, firings: list[tuple[uuid.UUID, str, str]]) -> dict[Key, Prepared | Rejection]:
        """For each ``(alert id, owner, dedup key)`` with a template: the order checked
        and reserved, or why not. Synchronous: the reservations are taken at once."""
        out: dict[Key, Prepared | Rejection] = {}
        for alert_id, owner, dedup_key in firings:
            template = self.templates.get(alert_id)
            if template is None:
                continue
            try:
                request = parse_order(template)
                out[(alert_id, dedup_key)] = self._service.prepare(
                    owner,
                    self._limits_for(owner),
                    request,
                    key=idempotency_key(alert_id, dedup_key),
                    source="alert",
                    alert_id=alert_id,
                )
            except TickgraphError as exc:
                out[(alert_id, dedup_key)] = Rejection(str(exc.extensions["code"]), exc.message)
        return out

    @staticmethod
    def outcome(decided: Prepared | Rejection) -> dict[str, Any]:
        """What the firing records about its order."""
        if isinstance(decided, Rejection):
            return {"rejected": {"code": decided.code, "message": decided.message}}
        first = decided.orders[0]
        return {"id": first.id, "symbol": first.symbol, "side": str(first.side)}

    async def insert(
        self,
        conn: asyncpg.Connection,
        decided: Mapping[Key, Prepared | Rejection],
        new_firings: set[Key],
    ) -> list[tuple[int, Prepared]]:
        """Insert the orders of the firings that are new, in the firing's transaction."""
        placed = []
        for key, item in decided.items():
            if isinstance(item, Rejection) or key not in new_firings:
                continue
            outbox = await item.insert(conn)
            if outbox is not None:
                placed.append((outbox, item))
        return placed

    def settle(
        self, decided: Mapping[Key, Prepared | Rejection], placed: list[tuple[int, Prepared]]
    ) -> None:
        """After the commit: submit what was inserted, release every other reservation."""
        inserted = {id(p) for _, p in placed}
        for item in decided.values():
            if isinstance(item, Prepared) and id(item) not in inserted:
                self._service.discard(item)
        for outbox, item in placed:
            self._service.submit(outbox, item)

    def release(self, decided: Mapping[Key, Prepared | Rejection]) -> None:
        """The commit failed: release every reservation (the retry prepares afresh)."""
        for item in decided.values():
            if isinstance(item, Prepared):
                self._service.discard(item)
