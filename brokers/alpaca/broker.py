"""``AlpacaBroker``: the ``Broker`` port over Alpaca's REST API and ``trade_updates``.

``submit``/``cancel``/``replace`` start a task and return it (a future the order
service's relay waits on before it removes the outbox row: the row outlives a crash
until Alpaca's answer is in the ledger). Every report becomes events through the
``Tracker``, in order, on the event loop.

Exactly once: our order id is the ``client_order_id``. A submit that times out, loses
its connection or gets a 5xx is resolved by looking the order up by that id; only if
Alpaca does not have it is the same body sent again (whichever copy lands second is
refused as a duplicate, so there is one order either way). A 422 on submit may be that
duplicate: the lookup decides. A request that certainly never left (connection
refused) is retried until ``submit_deadline_s``, then the order is rejected with
``broker_unavailable``. ``resubmit`` (the start-up re-issue of an outbox row) always
looks up first.

After every (re)connect of the stream, ``reconcile`` (``brokers.alpaca.reconcile``)
reads open orders, recent fills and positions over REST; what the stream did not
deliver is emitted and reported as a correction.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from brokers.alpaca.errors import BrokerUnavailable, NotSent, Refused, Uncertain
from brokers.alpaca.pacing import Pacing
from brokers.alpaca.reconcile import Correction, Reconciler, read_order
from brokers.alpaca.rest import AlpacaRest, Credentials, RestConfig, RestStats
from brokers.alpaca.stream import TradeUpdatesStream
from brokers.alpaca.tracker import Tracked, Tracker
from brokers.alpaca.wire import (
    Snapshot,
    WireError,
    decimal,
    leg_roles,
    order_body,
    replace_body,
    trade_update,
)
from brokers.alpaca.wire import snapshot as parse_snapshot
from brokers.port import Listener
from server.trading.errors import OrderNotFound
from server.trading.events import OrderEvent, Reason
from server.trading.lifecycle import fold_order
from server.trading.model import Order
from server.trading.states import DONE, EventKind
from streams.backoff import Backoff

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AlpacaConfig:
    rest: RestConfig = field(default_factory=RestConfig)
    #: How long a submit that cannot reach Alpaca at all is retried before rejection.
    submit_deadline_s: float = 15.0
    #: Fills are read back this far before the oldest open order on reconciliation.
    activities_overlap_ms: int = 60_000


def _drop(event: OrderEvent) -> None:
    raise RuntimeError(f"AlpacaBroker has no listener for {event.kind} of {event.order_id}")


def _log_correction(correction: Correction) -> None:
    log.warning("alpaca correction: %s", correction.describe())


class AlpacaBroker:
    def __init__(
        self,
        credentials: Credentials,
        *,
        pacing: Pacing | None = None,
        config: AlpacaConfig | None = None,
        seq_start: int | None = None,
        on_correction: Callable[[Correction], None] = _log_correction,
        on_positions: Callable[[dict[str, Any]], None] | None = None,
        stats: RestStats | None = None,
    ) -> None:
        self.config = config or AlpacaConfig()
        #: Recorded with each order and account: a live account is another account.
        self.name = "alpaca-live" if credentials.live else "alpaca"
        # 190, not 200: a margin for clocks and for a window Alpaca may count otherwise.
        self.rest = AlpacaRest(credentials, pacing or Pacing(190), self.config.rest, stats)
        # Above every seq an earlier run of this broker can have used.
        start = seq_start if seq_start is not None else time.time_ns() // 1000
        self.tracker = Tracker(seq=itertools.count(start))
        self._listener: Listener = _drop
        self._tasks: set[asyncio.Task[None]] = set()
        self._busy: dict[str, asyncio.Task[None]] = {}
        self._lock = asyncio.Lock()
        self._orphans: list[dict[str, Any]] = []
        self._probe: asyncio.Task[None] | None = None
        self.reconciler = Reconciler(
            self.rest,
            self.tracker,
            self._deliver,
            on_correction,
            on_positions,
            overlap_ms=self.config.activities_overlap_ms,
        )
        self.stream = TradeUpdatesStream(
            credentials.stream_url,
            credentials.key_id,
            credentials.secret,
            on_update=self._on_stream,
            on_connected=self.reconcile,
            on_unauthorized=lambda: log.error(
                "alpaca: key %s was refused by the stream", credentials.key_id[:6] + "…"
            ),
        )

    # --- lifecycle ----------------------------------------------------------------------

    def set_listener(self, listener: Listener) -> None:
        self._listener = listener

    def start(self) -> None:
        self.stream.start()

    async def close(self) -> None:
        await self.stream.stop()
        tasks = [*self._tasks, *([self._probe] if self._probe else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.rest.close()

    def check_available(self) -> None:
        """``BROKER_UNAVAILABLE`` while Alpaca's REST API is failing (a probe runs in the
        background and clears it as soon as Alpaca answers again)."""
        if self.rest.failing_since is None:
            return
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._probe_once(), name="alpaca-probe")
        raise BrokerUnavailable("Alpaca cannot be reached now; try again shortly")

    async def opening_cash(self) -> Decimal:
        """The account's cash now: where a new tickgraph account of it starts."""
        try:
            account = await self.rest.call("GET", "/account")
        except (Uncertain, NotSent) as exc:
            raise BrokerUnavailable("Alpaca cannot be reached now; try again shortly") from exc
        return decimal(account.get("cash"), "cash")

    async def _probe_once(self) -> None:
        with contextlib.suppress(Uncertain, NotSent, Refused):
            await self.rest.call("GET", "/clock")

    def _deliver(self, events: list[OrderEvent]) -> None:
        for event in events:
            self._listener(event)

    def _spawn(self, order_id: str, work: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(work, name=f"alpaca-{order_id[:8]}")
        self._tasks.add(task)
        self._busy[order_id] = task
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(
            lambda t: self._busy.pop(order_id, None) if self._busy.get(order_id) is t else None
        )
        return task

    # --- the port -----------------------------------------------------------------------

    def submit(self, orders: Sequence[Order]) -> asyncio.Future[None]:
        return self._submit(orders, lookup_first=False)

    def resubmit(self, orders: Sequence[Order]) -> asyncio.Future[None]:
        """A request that may have reached Alpaca before a crash: look it up first."""
        return self._submit(orders, lookup_first=True)

    def _submit(self, orders: Sequence[Order], *, lookup_first: bool) -> asyncio.Future[None]:
        root = orders[0]
        running = self._busy.get(f"submit:{root.id}")
        if running is not None:
            return running  # already being placed: the same request, not a second one
        for order in orders:
            self.tracker.track(order)
        return self._spawn(f"submit:{root.id}", self._place(list(orders), lookup_first))

    def restore(
        self,
        ledger: Iterable[tuple[Order, Sequence[OrderEvent]]],
        *,
        next_seq: int,
        now_ms: int,
    ) -> None:
        """The open orders of the ledger (each folded from its events; the done ones it
        is given for reference are left out); the next reconciliation brings them up to
        date (and binds them to Alpaca's ids)."""
        for order, events in ledger:
            state = fold_order(order, list(events))
            if state.status not in DONE:
                self.tracker.track(order, state)

    def cancel(self, order_id: str) -> asyncio.Future[None]:
        tracked = self._tracked(order_id)
        self._mirror(tracked, EventKind.CANCEL_REQUESTED)
        placing = self._placing(tracked)
        return self._spawn(f"cancel:{order_id}", self._cancel(tracked, placing))

    def replace(self, order_id: str, replacement: Order) -> asyncio.Future[None]:
        old = self._tracked(order_id)
        self._mirror(old, EventKind.REPLACE_REQUESTED)
        old.replacement = replacement.id
        new = self.tracker.track(replacement)
        placing = self._placing(old)
        return self._spawn(f"replace:{replacement.id}", self._replace(old, new, placing))

    def _placing(self, tracked: Tracked) -> asyncio.Task[None] | None:
        """The submit of this order (or of its request's first order) still running: a
        cancel or replace waits for it, or it could miss an order that lands after."""
        order = tracked.order
        for order_id in (order.id, order.parent_id, order.replaces):
            task = self._busy.get(f"submit:{order_id}") if order_id else None
            if task is not None:
                return task
        return None

    @staticmethod
    async def _after(task: asyncio.Task[None] | None) -> None:
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)

    def _tracked(self, order_id: str) -> Tracked:
        tracked = self.tracker.orders.get(order_id)
        if tracked is None or tracked.state.status in DONE:
            raise OrderNotFound(f"no open order {order_id} at Alpaca", orderId=order_id)
        return tracked

    def _mirror(self, tracked: Tracked, kind: EventKind) -> None:
        """The request the service has recorded, in our copy of the order's state."""
        state = tracked.state
        with contextlib.suppress(Exception):
            state.apply(
                OrderEvent(
                    0,
                    kind,
                    state.order.id,
                    state.status,
                    state.updated_ms,
                    state.qty,
                    state.filled_qty,
                )
            )

    # --- placing ------------------------------------------------------------------------

    async def _place(self, orders: list[Order], lookup_first: bool) -> None:
        root = orders[0]
        body = order_body(orders)
        backoff = Backoff(0.2, 5.0)
        deadline = time.monotonic() + self.config.submit_deadline_s
        uncertain = lookup_first
        while True:
            if uncertain:
                try:
                    found = await self._lookup(root.id)
                except (Uncertain, NotSent):
                    await asyncio.sleep(backoff.next_delay())
                    continue
                if found is not None:
                    self._answered(orders, found)
                    return
            try:
                answer = await self.rest.call("POST", "/orders", body)
            except Uncertain as exc:
                log.info("alpaca: submit of %s is uncertain (%s); looking it up", root.id, exc)
                uncertain = True
            except NotSent:
                if not uncertain and time.monotonic() > deadline:
                    self._reject(orders, Reason.BROKER_UNAVAILABLE, "Alpaca could not be reached")
                    return
            except Refused as exc:
                found = await self._lookup_settled(root.id) if exc.status == 422 else None
                if found is not None:  # "client_order_id must be unique": it is there
                    self._answered(orders, found)
                else:
                    self._reject(orders, Reason.BROKER_REJECTED, exc.message)
                return
            else:
                self._answered(orders, parse_snapshot(answer))
                return
            await asyncio.sleep(backoff.next_delay())

    async def _lookup(self, client_order_id: str) -> Snapshot | None:
        try:
            return await read_order(self.rest, client_order_id, None)
        except Refused as exc:  # not a 404: try again like any failed lookup
            raise Uncertain(f"lookup refused: {exc.status}") from None

    async def _lookup_settled(self, client_order_id: str) -> Snapshot | None:
        """A lookup that retries until Alpaca answers it."""
        backoff = Backoff(0.2, 5.0)
        while True:
            try:
                return await self._lookup(client_order_id)
            except (Uncertain, NotSent):
                await asyncio.sleep(backoff.next_delay())

    def _answered(self, orders: list[Order], snap: Snapshot) -> None:
        """Alpaca has the request: bind its ids to ours, emit what it shows."""
        by_role = {o.role: o for o in orders}
        root = orders[0]
        pairs = leg_roles(root.order_class, snap)
        for role, alpaca in pairs:
            ours = by_role.get(role)
            if ours is not None:
                self.tracker.bind(ours.id, alpaca.id)
        events: list[OrderEvent] = []
        for _, alpaca in pairs:
            events += self.tracker.on_snapshot(alpaca)
        self._deliver(events)
        self._replay_orphans()

    def _reject(self, orders: list[Order], reason: Reason, message: str) -> None:
        log.warning("alpaca refused order %s: %s (%s)", orders[0].id, message, reason)
        now = time.time_ns() // 1_000_000
        self._deliver(self.tracker.rejected([o.id for o in orders], reason, now))

    # --- cancel and replace ----------------------------------------------------------------

    async def _alpaca_id(self, tracked: Tracked) -> str | None:
        if tracked.alpaca_id is None:
            found = await self._lookup_settled(tracked.order.id)
            if found is not None:
                self.tracker.bind(tracked.order.id, found.id)
        return tracked.alpaca_id

    async def _cancel(self, tracked: Tracked, placing: asyncio.Task[None] | None) -> None:
        await self._after(placing)
        backoff = Backoff(0.2, 5.0)
        while True:
            alpaca_id = await self._alpaca_id(tracked)
            if alpaca_id is None:  # never placed: nothing to cancel at Alpaca
                self._deliver(self.tracker.status(tracked, EventKind.CANCELED, _now_ms()))
                return
            try:
                await self.rest.call("DELETE", f"/orders/{alpaca_id}")
                return  # accepted: the outcome comes on the stream (or the reconciliation)
            except (Uncertain, NotSent):
                await asyncio.sleep(backoff.next_delay())
            except Refused:
                await self._settle(tracked)  # not cancelable: it filled or ended
                return

    async def _replace(
        self, old: Tracked, new: Tracked, placing: asyncio.Task[None] | None
    ) -> None:
        await self._after(placing)
        backoff = Backoff(0.2, 5.0)
        spec_qty = new.order.spec.qty
        remaining = None if spec_qty is None else spec_qty - old.state.filled_qty
        body = replace_body(new.order, remaining)
        uncertain = False
        while True:
            if uncertain:
                try:
                    found = await self._lookup(new.order.id)
                except (Uncertain, NotSent):
                    await asyncio.sleep(backoff.next_delay())
                    continue
                if found is not None:
                    self._replaced(new, found)
                    return
            alpaca_id = await self._alpaca_id(old)
            if alpaca_id is None:
                self._deliver(
                    self.tracker.rejected([new.order.id], Reason.UNKNOWN_ORDER, _now_ms())
                )
                return
            try:
                answer = await self.rest.call("PATCH", f"/orders/{alpaca_id}", body)
            except Uncertain:
                uncertain = True
            except NotSent:
                pass
            except Refused as exc:
                found = await self._lookup_settled(new.order.id) if exc.status == 422 else None
                if found is not None:
                    self._replaced(new, found)
                    return
                log.info("alpaca refused the replace of %s: %s", old.order.id, exc.message)
                events = self.tracker.status(old, EventKind.REPLACE_REJECTED, _now_ms())
                events += self.tracker.rejected([new.order.id], Reason.NOT_REPLACEABLE, _now_ms())
                self._deliver(events)
                await self._settle(old)
                return
            else:
                self._replaced(new, parse_snapshot(answer))
                return
            await asyncio.sleep(backoff.next_delay())

    def _replaced(self, new: Tracked, snap: Snapshot) -> None:
        self.tracker.bind(new.order.id, snap.id)
        self._deliver(self.tracker.on_snapshot(snap))
        self._replay_orphans()

    async def _settle(self, tracked: Tracked) -> None:
        """Read an order back after a refused request, so our state follows Alpaca's."""
        alpaca_id = tracked.alpaca_id
        if alpaca_id is None:
            return
        with contextlib.suppress(Uncertain, NotSent, Refused, WireError):
            doc = await self.rest.call("GET", f"/orders/{alpaca_id}", {"nested": "true"})
            await self.reconciler.catch_up()
            self._deliver(self.tracker.on_snapshot(parse_snapshot(doc), answers=True))

    # --- the stream -------------------------------------------------------------------------

    def _on_stream(self, data: dict[str, Any]) -> None:
        try:
            update = trade_update(data)
        except WireError as exc:
            log.warning("alpaca: a trade update that does not parse: %s", exc)
            return
        events, missed = self.tracker.on_update(update)
        self._deliver(events)
        if missed:
            if self.tracker.ours(update.order) is None:
                # An order not bound yet (its submit answer is on its way).
                self._orphans.append(data)
                del self._orphans[:-1000]
            else:
                self._spawn(f"catch-up:{update.order.id}", self._catch_up())

    def _replay_orphans(self) -> None:
        orphans, self._orphans = self._orphans, []
        for data in orphans:
            self._on_stream(data)

    async def _catch_up(self) -> None:
        async with self._lock:
            with contextlib.suppress(Uncertain, NotSent, Refused):
                await self.reconciler.catch_up()

    async def reconcile(self) -> None:
        """Bring every order we track up to Alpaca's state (after each stream connect)."""
        async with self._lock:
            await self.reconciler.run()
        self._replay_orphans()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
