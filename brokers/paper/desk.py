"""Placing orders, ending them, replacing them, and their contingent legs."""

from __future__ import annotations

from brokers.paper.core import ACTIVATE, AUCTION, EXPIRE
from brokers.paper.execution import Execution
from brokers.paper.symbols import SymbolState
from brokers.paper.working import EXTENDED, Mode, Working
from server.trading.errors import OrderNotReplaceable
from server.trading.events import Reason
from server.trading.model import LegRole, Order, OrderClass, OrderType, TimeInForce
from server.trading.states import EventKind, OrderStatus, next_status
from server.trading.timing import (
    auction_session,
    gtc_expiry_ms,
    session_refusal,
    working_session,
)

E = EventKind
S = OrderStatus


class OrderDesk(Execution):
    def _run_action(self, action: int, w: Working, time_ms: int) -> None:
        if w.done:
            return
        if action == ACTIVATE:
            if w.mode is Mode.WAITING:
                self._emit(w, E.NEW)
                self._activate(w)
        elif action == EXPIRE:
            if w.expires_ms == time_ms and w.mode is not Mode.HELD:
                gtc = w.order.spec.time_in_force is TimeInForce.GTC
                reason = Reason.GTC_MAX_AGE if gtc else Reason.DAY_ENDED
                if w.mode is Mode.AUCTION:
                    reason = Reason.AUCTION_MISSED
                self._end(w, E.EXPIRED, reason)
        elif action == AUCTION:
            self._closing_auction(w)

    def _submit_group(self, orders: list[Order]) -> None:
        group = [self._new_working(o) for o in orders]
        for w in group:
            st = self._symbols.get(w.order.symbol) or self._symbol(w.order.symbol)
            st.open_orders += 1
        by_id = {w.order.id: w for w in group}
        first = group[0]
        if (
            first.order.order_class is OrderClass.OCO
            or first.order.order_class is OrderClass.BRACKET
        ):
            exits = [w for w in group if w.order.role is not LegRole.ENTRY]
            if len(exits) == 2:
                exits[0].sibling, exits[1].sibling = exits[1].order.id, exits[0].order.id
        for w in group:
            parent = by_id.get(w.parent or "")
            if parent is not None and parent.order.role is LegRole.ENTRY:
                parent.children.append(w.order.id)
        refusal = session_refusal(first.order.spec, self.calendar, self.now_ms)
        if refusal is not None:
            for w in group:
                self._finish(w)
                self._emit(w, E.REJECTED, reason=Reason.MARKET_CLOSED)
            return
        legs = [
            w
            for w in group
            if w.parent is not None
            and by_id.get(w.parent) in group
            and by_id[w.parent].order.role is LegRole.ENTRY
        ]
        for leg in legs:
            leg.mode = Mode.HELD  # before the entry: it may fill at once and start them
        for w in group:
            if w not in legs and not w.done:  # an OCO leg may be canceled by its sibling
                self._place(w)
        for leg in legs:
            if leg.mode is Mode.HELD and leg.status is S.PENDING_NEW:
                self._emit(leg, E.HELD)

    def _place(self, w: Working, related: str | None = None) -> None:
        """Start working ``w`` now, or accept it for its session. ``related``: the order
        it replaces."""
        window = self._book_life(w, self.now_ms)
        if window is None:  # an auction order, queued for its auction
            self._emit(w, E.ACCEPTED, related=related)
            return
        start, end = window
        if start <= self.now_ms < end:
            self._emit(w, E.NEW, related=related)
            self._activate(w)
            return
        if w.status is S.PENDING_NEW:
            self._emit(w, E.ACCEPTED, related=related)
        w.mode = Mode.WAITING
        self._schedule_at(start, ACTIVATE, w)

    def _book_life(self, w: Working, placed_ms: int) -> tuple[int, int] | None:
        """Give ``w``, placed at ``placed_ms``, its session and schedule what its time in
        force brings (expiry, auction). An OPG/CLS order joins its auction's queue
        (returns None); any other gets its window (start, end) back."""
        spec = w.order.spec
        tif = spec.time_in_force
        if tif is TimeInForce.OPG or tif is TimeInForce.CLS:
            session = auction_session(spec, self.calendar, placed_ms)
            w.session = session
            w.mode = Mode.AUCTION
            st = self._symbols[spec.symbol]
            if tif is TimeInForce.OPG:
                st.opening.append(w)
                w.expires_ms = session.close_ms
                self._schedule_at(session.close_ms, EXPIRE, w)
            else:
                st.closing.append(w)
                self._schedule_at(session.close_ms, AUCTION, w)
            return None
        session = working_session(spec, self.calendar, placed_ms)
        w.session = session
        start, end = session.window(spec.extended_hours)
        if tif is TimeInForce.DAY:
            w.expires_ms = end
            self._schedule_at(end, EXPIRE, w)
        elif tif is TimeInForce.GTC and self.config.gtc_max_age_days is not None:
            w.expires_ms = gtc_expiry_ms(
                self.calendar, w.order.created_ms, self.config.gtc_max_age_days
            )
            self._schedule_at(w.expires_ms, EXPIRE, w)
        return start, end

    def _activate(self, w: Working) -> None:
        st = self._symbols[w.order.symbol]
        kind = w.type
        if kind is OrderType.MARKET or (w.triggered and kind is not OrderType.STOP_LIMIT):
            w.mode = Mode.MARKET
            st.markets[w.window].append(w)
            st.working[w.window] += 1
            self._take(w, st)
        elif kind is OrderType.LIMIT or (w.triggered and kind is OrderType.STOP_LIMIT):
            self._take(w, st)
            if not w.done:
                st.book(w.window).add_limit(w)
                st.working[w.window] += 1
        elif kind is OrderType.TRAILING_STOP:
            water = w.water if w.water is not None else self._anchor(st, w)
            st.book(w.window).add_trailing(w, water)
            st.working[w.window] += 1
        else:
            st.book(w.window).add_stop(w)
            st.working[w.window] += 1
        tif = w.order.spec.time_in_force
        if (tif is TimeInForce.IOC or tif is TimeInForce.FOK) and not w.done:
            self._end(w, E.CANCELED, Reason.IOC_REMAINDER)

    def _anchor(self, st: SymbolState, w: Working) -> int | None:
        """A new trailing stop trails from the last trade of its window, if any."""
        assert w.session is not None
        start, _ = w.session.window(w.window == EXTENDED)
        return st.last if st.last and st.last_ms >= start else None

    def _finish(self, w: Working) -> None:
        """Take ``w`` out of whatever it is in; it is done."""
        mode = w.mode
        st = self._symbols[w.order.symbol]
        if mode is Mode.MARKET:
            st.markets[w.window].remove(w)
            st.working[w.window] -= 1
        elif mode is Mode.LIMIT or mode is Mode.STOP or mode is Mode.TRAILING:
            st.book(w.window).remove(w)
            st.working[w.window] -= 1
        elif mode is Mode.AUCTION:
            queue = st.opening if w.order.spec.time_in_force is TimeInForce.OPG else st.closing
            queue.remove(w)
        if mode is not Mode.DONE:
            st.open_orders -= 1
        w.mode = Mode.DONE

    def _end(self, w: Working, kind: EventKind, reason: Reason, related: str | None = None) -> None:
        """Cancel or expire ``w`` and deal with its legs."""
        self._finish(w)
        if w.qty is None:  # a notional order ends with the quantity it got
            w.qty = w.filled
        self._emit(w, kind, reason=reason, related=related)
        self._entry_ended(w)

    def _entry_ended(self, w: Working) -> None:
        """An entry is done: its held legs work for what filled, or are canceled."""
        for child_id in w.children:
            leg = self._orders[child_id]
            if leg.mode is not Mode.HELD:
                continue
            if w.filled > 0:
                leg.qty = w.filled
                self._place_leg(leg)
            else:
                self._end(leg, E.CANCELED, Reason.PARENT_CANCELED, w.order.id)

    def _place_leg(self, leg: Working) -> None:
        leg.mode = Mode.WAITING
        self._place(leg)

    def _replace_refusal(self, w: Working, new: Order) -> Reason | None:
        """Why the replace is refused (answered with ``replace_rejected``), or None.
        Raises for a request that should never have been made in the order's status."""
        if w.done:
            if w.status is S.REJECTED:
                raise OrderNotReplaceable(f"order {w.order.id} was rejected")
            reason = Reason.REPLACED_ORDER_FILLED if w.status is S.FILLED else Reason.ALREADY_DONE
            return reason
        if w.status not in (S.NEW, S.PARTIALLY_FILLED, S.HELD):
            raise OrderNotReplaceable(
                f"order {w.order.id} is {w.status}: only working or held orders can be replaced",
                status=str(w.status),
            )
        old, spec = w.order, new.spec
        same = (
            spec.symbol == old.spec.symbol
            and spec.side is old.spec.side
            and spec.type is old.spec.type
            and new.order_class is old.order_class
            and new.role is old.role
            and new.parent_id == old.parent_id
        )
        if not same or spec.type is OrderType.MARKET or spec.qty is None:
            return Reason.NOT_REPLACEABLE  # only prices, quantity and time in force change
        if spec.qty <= w.filled:
            return Reason.NOT_REPLACEABLE  # the new total must exceed what filled
        if spec.time_in_force not in (TimeInForce.DAY, TimeInForce.GTC):
            return Reason.NOT_REPLACEABLE
        return None

    def _do_replace(self, w: Working, replacement: Order) -> None:
        held = w.mode is Mode.HELD
        water = self._water(w)
        triggered = w.triggered
        self._finish(w)
        w.status = next_status(w.status, E.REPLACE_REQUESTED)
        self._emit(w, E.REPLACED, related=replacement.id)
        new = self._new_working(replacement)
        st = self._symbols[replacement.symbol]
        st.open_orders += 1
        assert replacement.spec.qty is not None
        new.qty = replacement.spec.qty - w.filled
        new.triggered = triggered
        new.water = water
        new.parent, new.sibling, new.children = w.parent, w.sibling, w.children
        w.children = []
        # The family now points at the replacement.
        if new.sibling is not None:
            self._orders[new.sibling].sibling = new.order.id
        for child_id in new.children:
            self._orders[child_id].parent = new.order.id
        parent = self._orders.get(new.parent or "")
        if parent is not None:
            parent.children = [new.order.id if c == w.order.id else c for c in parent.children]
        if held:
            new.mode = Mode.HELD
            self._emit(new, E.HELD, related=w.order.id)
            return
        self._place(new, related=w.order.id)

    def _water(self, w: Working) -> int | None:
        if w.mode is not Mode.TRAILING:
            return None
        return self._symbols[w.order.symbol].book(w.window).water_of(w)
