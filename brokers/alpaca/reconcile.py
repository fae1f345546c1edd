"""Reconciliation: Alpaca's own state read back over REST after every (re)connect.

Alpaca replays nothing a disconnected stream missed, and a restarted process has only
its ledger. So, on every stream connect (before its updates are handed on):

1. **Open orders** (``GET /v2/orders?status=open&nested=true``) and, for each order we
   track that is not among them, the order itself (by client order id; a leg by its
   Alpaca id): every tracked order gets a fresh snapshot, and legs are bound to ours.
2. **Fills** (``GET /v2/account/activities/FILL``, oldest first, paged, from a little
   before the oldest open order): every execution of a tracked order that the ledger
   does not have is booked, in order (fills first, so a ``canceled`` after a partial
   fill finds the fill booked).
3. **Statuses**: each snapshot's status becomes the events that bring our order there,
   including the answer to a cancel/replace Alpaca settled while we were away.
4. **Positions** (``GET /v2/positions``) are handed to ``on_positions`` for the service
   to compare with its books (a difference means trading outside tickgraph, or a fill
   older than the window: it is recorded, never silently overwritten).

Every event this emits is something the stream did not deliver: each is also reported
as a ``Correction`` (logged, stored and shown by the service).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from brokers.alpaca.errors import Refused
from brokers.alpaca.rest import AlpacaRest
from brokers.alpaca.tracker import Tracker
from brokers.alpaca.wire import Snapshot, WireError, activity, leg_roles, snapshot
from server.trading.events import OrderEvent

log = logging.getLogger(__name__)

PAGE = 100
MAX_PAGES = 100


@dataclass(frozen=True, slots=True)
class Correction:
    """A difference between our books and Alpaca's, found by a reconciliation."""

    #: ``missed_event``: an order event the stream did not deliver (``order_id``,
    #: ``kind``); ``position``: Alpaca's position differs from ours (``detail``).
    what: str
    order_id: str | None
    kind: str | None
    detail: str

    def describe(self) -> str:
        target = f"order {self.order_id} {self.kind}" if self.order_id else "account"
        return f"{self.what}: {target}: {self.detail}"


async def read_order(rest: AlpacaRest, our_id: str, alpaca_id: str | None) -> Snapshot | None:
    """One order (with its legs) by its Alpaca id when known, else by our id as its client
    order id; None if Alpaca does not have it (404). Other refusals are raised."""
    try:
        if alpaca_id is not None:
            doc = await rest.call("GET", f"/orders/{alpaca_id}", {"nested": "true"})
        else:
            doc = await rest.call(
                "GET", "/orders:by_client_order_id", {"client_order_id": our_id, "nested": "true"}
            )
    except Refused as exc:
        if exc.status == 404:
            return None
        raise
    return snapshot(doc)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Reconciler:
    def __init__(
        self,
        rest: AlpacaRest,
        tracker: Tracker,
        deliver: Callable[[list[OrderEvent]], None],
        on_correction: Callable[[Correction], None],
        on_positions: Callable[[dict[str, Any]], None] | None,
        *,
        overlap_ms: int = 60_000,
    ) -> None:
        self._rest = rest
        self._tracker = tracker
        self._deliver = deliver
        self._on_correction = on_correction
        self._on_positions = on_positions
        self._overlap_ms = overlap_ms
        self.runs = 0
        self.corrections = 0

    def _correct(self, events: list[OrderEvent], detail: str) -> None:
        # Reported first: while the order is still open, its owner is known.
        for event in events:
            self.corrections += 1
            self._on_correction(Correction("missed_event", event.order_id, str(event.kind), detail))
        self._deliver(events)

    async def run(self) -> None:
        self.runs += 1
        snapshots = await self._snapshots()
        await self.catch_up()
        for snap in snapshots:
            self._correct(self._tracker.on_snapshot(snap, answers=True), f"Alpaca: {snap.status}")
        if self._on_positions is not None:
            positions = await self._rest.call("GET", "/positions")
            self._on_positions(
                {str(p.get("symbol")): p.get("qty") for p in positions if isinstance(p, dict)}
            )
        self._tracker.forget_done()

    async def _snapshots(self) -> list[Snapshot]:
        tracker = self._tracker
        docs = await self._rest.call(
            "GET", "/orders", {"status": "open", "nested": "true", "limit": "500"}
        )
        seen: dict[str, Snapshot] = {}
        for doc in docs or []:
            try:
                self._collect(snapshot(doc), seen)
            except WireError as exc:
                log.warning("alpaca: an open order that does not parse: %s", exc)
        for our_id in tracker.open_ids():
            tracked = tracker.orders[our_id]
            if any(tracker.ours(s) == our_id for s in seen.values()):
                continue
            found = await read_order(self._rest, our_id, tracked.alpaca_id)
            if found is not None:
                self._collect(found, seen)
        return list(seen.values())

    def _collect(self, snap: Snapshot, seen: dict[str, Snapshot]) -> None:
        """A root and its legs; the legs of one of our requests bound to ours by role."""
        tracker = self._tracker
        seen[snap.id] = snap
        root_id = tracker.ours(snap)
        if root_id is not None and snap.legs:
            root = tracker.orders[root_id].order
            legs = {
                t.order.role: t.order.id
                for t in tracker.orders.values()
                if t.order.parent_id == root_id
            }
            for role, leg in leg_roles(root.order_class, snap)[1:]:
                if role in legs:
                    tracker.bind(legs[role], leg.id)
        for leg in snap.legs:
            seen[leg.id] = leg

    async def catch_up(self) -> None:
        """Book every fill of a tracked order that we do not have yet."""
        tracker = self._tracker
        open_ids = tracker.open_ids()
        if not open_ids:
            return
        oldest = min(tracker.orders[i].order.created_ms for i in open_ids)
        params: dict[str, str] = {
            "after": _iso(oldest - self._overlap_ms),
            "direction": "asc",
            "page_size": str(PAGE),
        }
        for _ in range(MAX_PAGES):
            page = await self._rest.call("GET", "/account/activities/FILL", params)
            if not isinstance(page, list) or not page:
                return
            for doc in page:
                try:
                    act = activity(doc)
                except WireError as exc:
                    log.warning("alpaca: a fill activity that does not parse: %s", exc)
                    continue
                events = tracker.on_activity(act)
                if events is None:
                    log.error("alpaca: fills of order %s do not add up", act.order_id)
                    continue
                self._correct(events, f"fill {act.qty} @ {act.price} (activity {act.id})")
            if len(page) < PAGE:
                return
            params["page_token"] = str(page[-1].get("id"))
