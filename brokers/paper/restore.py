"""Restoring the engine after a restart, from the ledger (``MatchingEngine.restore``).

Every order goes back where the engine that never stopped would have it: resting at
its remaining quantity with its fills counted, waiting for its session, held for its
entry, linked to its OCO sibling, triggered if its stop triggered, trailing from the
water mark the caller supplies. Nothing is emitted for an order whose ledger is
complete. What the ledger lacks (events the engine decided before the restart but
that were never recorded, and what fell due while the server was down) is emitted by
``restore`` itself, exactly as the old engine would have emitted it; see
``docs/trading.md`` ("Restart") for the whole contract.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal

from brokers.paper.core import ACTIVATE
from brokers.paper.desk import OrderDesk
from brokers.paper.ledger import LedgerRecord, read_ledger
from brokers.paper.working import Mode, Working
from server.trading.events import OrderEvent, Reason
from server.trading.model import LegRole, Order, OrderClass, OrderType, TimeInForce
from server.trading.money import ticks_from_feed, ticks_of
from server.trading.states import DONE, EventKind, OrderStatus
from streams.events import MarketEvent, Quote, Trade

E = EventKind
S = OrderStatus

_EXIT_CLASSES = (OrderClass.OCO, OrderClass.BRACKET)
_LEG_CLASSES = (OrderClass.BRACKET, OrderClass.OTO)


class RestoringDesk(OrderDesk):
    def _restore(
        self,
        ledger: Iterable[tuple[Order, Sequence[OrderEvent]]],
        next_seq: int,
        now_ms: int,
        water_marks: Mapping[str, Decimal | None],
        market: Iterable[MarketEvent],
    ) -> list[OrderEvent]:
        records = _read_all(ledger, self._orders)
        top = max((r.last_seq for r in records.values()), default=0)
        if next_seq <= max(top, self._event_seq):
            raise ValueError(
                f"next_seq {next_seq} must exceed every seq already used "
                f"({max(top, self._event_seq)})"
            )
        for order_id in water_marks:
            if order_id not in records:
                raise ValueError(f"a water mark for order {order_id}, which is not restored")
        _check_chains(records)
        self._event_seq = next_seq - 1
        # The old engine's clock was at least at its last recorded event.
        self._clock(max((r.last_ms for r in records.values()), default=now_ms))
        for event in market:
            self._prime(event)
        known = [r for r in records.values() if r.acknowledged]
        known.sort(key=lambda r: r.first_seq)
        pending = _late_members(records, {r.order.id for r in known})
        workings = [self._revive(r) for r in known] + [self._revive(r) for r in pending]
        self._link(workings, records)
        markets: list[tuple[int, Working]] = []
        for w in workings[: len(known)]:
            if not w.done:
                record = records[w.order.id]
                self._resettle(w, record, records, water_marks, markets)
        markets.sort(key=lambda e: e[0])
        for _, w in markets:
            w.mode = Mode.MARKET
            st = self._symbols[w.order.symbol]
            st.markets[w.window].append(w)
            st.working[w.window] += 1
        self._catch_up(workings[: len(known)], workings[len(known) :])
        self._clock(now_ms)
        return self._flush()

    def _prime(self, event: MarketEvent) -> None:
        """What the feed last said, as the engine's knowledge of the market: nothing is
        matched against it (the old engine already did)."""
        if type(event) is not Quote and type(event) is not Trade:
            return
        st = self._symbols.get(event.sym) or self._symbol(event.sym)
        if type(event) is Quote:
            st.bid = ticks_from_feed(event.bp)
            st.ask = ticks_from_feed(event.ap)
            st.bid_avail = event.bs
            st.ask_avail = event.ask_size
            st.quote_ms = event.t
        elif type(event) is Trade:
            p = ticks_from_feed(event.p)
            if not p:
                return
            st.last, st.last_ms = p, event.t
            session = self.calendar.next_session(event.t)
            if session.open_ms <= event.t < session.close_ms:
                st.reg_last, st.reg_last_ms = p, event.t

    def _revive(self, r: LedgerRecord) -> Working:
        """The order's record as the ledger has it (not yet placed anywhere)."""
        state = r.state
        w = self._new_working(r.order)
        st = self._symbols.get(r.order.symbol) or self._symbol(r.order.symbol)
        w.status = r.engine_status
        w.ack = state.acknowledged
        w.qty = state.qty
        w.filled = state.filled_qty
        w.filled_value = state.filled_value
        w.fill_count = r.fill_count
        notional = r.order.spec.notional
        if notional is not None:
            w.notional_left = notional - state.filled_value
        if w.status in DONE:
            w.mode = Mode.DONE
        else:
            st.open_orders += 1
        return w

    def _link(self, workings: list[Working], records: Mapping[str, LedgerRecord]) -> None:
        """Entries and their legs, OCO siblings: as the old engine had them, through
        any replacements (the engine re-points them when it replaces an order)."""
        successor = _successor(records)
        live = [w for w in workings if w.status is not S.REPLACED]
        exits: dict[str, list[Working]] = {}
        for w in live:
            order = w.order
            cls = order.order_class
            if order.role is LegRole.ENTRY:
                continue
            if order.parent_id is not None and cls in _LEG_CLASSES:
                w.parent = _current(order.parent_id, successor)
            if cls in _EXIT_CLASSES:
                family = order.parent_id or _origin(order.id, records)
                exits.setdefault(family, []).append(w)
        # An entry's legs in ``build_orders`` order (a replaced leg keeps its place).
        for w in sorted(live, key=lambda w: _ROLE_RANK[w.order.role]):
            parent = self._orders.get(w.parent or "") if w.order.role is not LegRole.ENTRY else None
            if parent is not None and parent.order.role is LegRole.ENTRY:
                parent.children.append(w.order.id)
        for pair in exits.values():
            if len(pair) == 2 and pair[0].order.role is not pair[1].order.role:
                pair[0].sibling, pair[1].sibling = pair[1].order.id, pair[0].order.id

    def _resettle(
        self,
        w: Working,
        r: LedgerRecord,
        records: Mapping[str, LedgerRecord],
        water_marks: Mapping[str, Decimal | None],
        markets: list[tuple[int, Working]],
    ) -> None:
        """Put an open, acknowledged order back where ``_place``/``_activate`` put it,
        without matching it (the old engine matched it against what it saw)."""
        if w.status is S.HELD:
            w.mode = Mode.HELD
            return
        assert r.placed_ms is not None  # acknowledged and not held: it was placed
        window = self._book_life(w, r.placed_ms)
        if window is None:  # an auction order, back in its auction's queue
            return
        w.triggered = _triggered(w.order, records)
        mark = water_marks.get(w.order.id)
        if mark is not None:
            w.water = ticks_of(mark)
        if w.status is S.ACCEPTED:
            w.mode = Mode.WAITING
            self._schedule_at(window[0], ACTIVATE, w)
            return
        st = self._symbols[w.order.symbol]
        kind = w.type
        book = st.book(w.window)
        if kind is OrderType.MARKET or (w.triggered and kind is not OrderType.STOP_LIMIT):
            markets.append((r.active_seq, w))
            return
        if kind is OrderType.LIMIT or (w.triggered and kind is OrderType.STOP_LIMIT):
            book.add_limit(w)
        elif kind is OrderType.TRAILING_STOP:
            if w.order.id in water_marks:
                book.add_trailing(w, w.water)  # None: no trade since it started
            else:
                book.add_trailing(w, self._anchor(st, w))  # trails afresh from now
        else:
            book.add_stop(w)
        st.working[w.window] += 1

    def _catch_up(self, known: list[Working], late: list[Working]) -> None:
        """Emit what the old engine had decided and the ledger lacks."""
        for w in late:
            self._late_member(w)
        for w in known:
            if w.done:
                continue
            tif = w.order.spec.time_in_force
            if w.mode is not Mode.HELD and w.status is not S.ACCEPTED:
                # IOC/FOK end within the call that placed them.
                if tif is TimeInForce.IOC:
                    self._end(w, E.CANCELED, Reason.IOC_REMAINDER)
                elif tif is TimeInForce.FOK:
                    self._end(w, E.CANCELED, Reason.FOK_NOT_FILLABLE)
        for w in known:
            sibling = self._orders.get(w.sibling or "")
            # The first fill of an exit cancels the other.
            if w.filled > 0 and sibling is not None and not sibling.done:
                if sibling.filled > 0:
                    raise ValueError(f"OCO orders {w.order.id} and {sibling.order.id} both filled")
                self._end(sibling, E.CANCELED, Reason.OCO_SIBLING_FILLED, w.order.id)
        for w in known:
            # A finished entry has started (or canceled) its held legs.
            if w.done and any(self._orders[c].mode is Mode.HELD for c in w.children):
                self._entry_ended(w)

    def _late_member(self, w: Working) -> None:
        """An order of a request the engine took whose own answer is not in the ledger:
        finish ``_submit_group`` for it."""
        parent = self._orders[w.order.parent_id or ""]
        if parent.order.role is LegRole.ENTRY and w.order.order_class in _LEG_CLASSES:
            w.mode = Mode.HELD
            if not parent.done:
                self._emit(w, E.HELD)
            # else: ``_catch_up`` starts it with the entry's other legs.
        elif parent.filled > 0:  # the OCO sibling filled at once
            w.mode = Mode.WAITING
            self._end(w, E.CANCELED, Reason.OCO_SIBLING_FILLED, parent.order.id)
        else:
            self._place(w)


_ROLE_RANK = {LegRole.ENTRY: 0, LegRole.TAKE_PROFIT: 1, LegRole.STOP_LOSS: 2}


def _read_all(
    ledger: Iterable[tuple[Order, Sequence[OrderEvent]]], engine_orders: Mapping[str, Working]
) -> dict[str, LedgerRecord]:
    records: dict[str, LedgerRecord] = {}
    for order, events in ledger:
        if order.id in records or order.id in engine_orders:
            raise ValueError(f"order {order.id} is restored twice")
        record = read_ledger(order, events)
        if not record.acknowledged and record.state.filled_qty > 0:
            raise ValueError(f"order {order.id} has fills but no acknowledgement")
        records[order.id] = record
    return records


def _successor(records: Mapping[str, LedgerRecord]) -> dict[str, str]:
    """Old order id -> the order that replaced it (accepted replacements only)."""
    return {
        r.order.replaces: r.order.id
        for r in records.values()
        if r.order.replaces is not None and r.acknowledged and r.state.status is not S.REJECTED
    }


def _current(order_id: str, successor: Mapping[str, str]) -> str:
    """The order that now stands for ``order_id`` after its replacements."""
    while order_id in successor:
        order_id = successor[order_id]
    return order_id


def _origin(order_id: str, records: Mapping[str, LedgerRecord]) -> str:
    """The first order of ``order_id``'s replace chain."""
    record = records.get(order_id)
    while record is not None and record.order.replaces is not None:
        order_id = record.order.replaces
        record = records.get(order_id)
    return order_id


def _triggered(order: Order, records: Mapping[str, LedgerRecord]) -> bool:
    """Its stop triggered, or that of an order it replaced (a replace keeps it)."""
    record = records.get(order.id)
    while record is not None:
        if record.triggered:
            return True
        prior = record.order.replaces
        record = records.get(prior) if prior is not None else None
    return False


def _check_chains(records: Mapping[str, LedgerRecord]) -> None:
    """Refuse a restore the engine cannot do right: an open replacement without the
    orders it replaced (its trigger, its OCO family), a held leg without its entry."""
    successor = _successor(records)
    for record in records.values():
        if not record.acknowledged or record.engine_status in DONE:
            continue
        walk = record.order
        while walk.replaces is not None:
            prior = records.get(walk.replaces)
            if prior is None:
                raise ValueError(
                    f"order {record.order.id} replaces {walk.replaces}: restore its ledger too"
                )
            walk = prior.order
        if record.engine_status is S.HELD and record.order.parent_id is not None:
            entry = records.get(_current(record.order.parent_id, successor))
            if entry is None or entry.state.status is S.REPLACED:
                raise ValueError(
                    f"held leg {record.order.id}: restore its entry's ledger "
                    f"({record.order.parent_id} and its replacements) too"
                )


def _late_members(records: Mapping[str, LedgerRecord], known: set[str]) -> list[LedgerRecord]:
    """Orders the engine took with their request (a bracket's legs, an OCO's second
    order) but whose own first event is not in the ledger: it was cut off right after
    the first order's. Replacements are not among them: their replace is re-sent."""
    return [
        r
        for r in records.values()
        if not r.acknowledged
        and r.order.replaces is None
        and r.order.parent_id in known
        and records[r.order.parent_id].order.replaces is None
    ]
