"""The paper broker's matching engine: orders filled against the live quote and trade
stream, deterministically, with no I/O.

Inputs are the decoded feed events (``streams.events.Quote``/``Trade``, exchange time
``t`` in ms), order requests (``submit``/``cancel``/``replace``) and explicit clock
calls (``advance``). Every call returns the ``OrderEvent`` values it caused, in order,
with strictly increasing ``seq``. The same inputs give the same events, byte for byte
(no wall clock, no randomness, no iteration over hash-ordered sets).

Time. The engine's clock is the latest time it was given (an event's ``t``, a
``now_ms``); an input that is older is handled at the engine's time. Session
boundaries (opens, closes, expiries, auctions) fire when the clock passes them, before
the input that moved it.

How orders fill (``docs/trading.md`` has the sources and the simplifications):

- **Market** orders take the opposite side of the quote (buy at the ask, sell at the
  bid) up to the displayed size; the rest waits for the next quotes (partial fills).
  Displayed size is shared: what one of our orders took is gone for the others until
  the next quote. Until a quote of the current session is known, they fill at trades,
  up to each trade's size. Slippage (``PaperConfig.slippage_bps``) worsens the price.
- **Limit** orders that are marketable on arrival take the quote like a market order
  (at the quote's price, never past the limit); the rest rests at the limit and fills
  at the limit price when the market quotes at or through it (up to the displayed
  size) or trades through it (up to the trade's size). A trade *at* the limit does not
  fill it: without queue position we cannot know we were reached.
- **Stop** orders trigger on a trade at or through the stop (buy stops at or above,
  sell stops at or below), then act as market orders (stop-limit: as limit orders).
- **Trailing stops** follow the high (sell) or low (buy) water mark of trades since
  they started, and trigger like stops.
- **IOC** fills what it can at once and cancels the rest; **FOK** fills all at once or
  is canceled; both need the market open. **DAY** orders expire at the end of the
  session they work in (16:00, or 20:00 with extended hours); **GTC** after
  ``gtc_max_age_days``. **OPG** orders fill in full at the session's first trade,
  **CLS** orders at its last (limit ones only if that price satisfies the limit; else
  they expire).
- **Bracket/OTO** legs are held until the entry has filled (or ends after a partial
  fill: then they cover what filled); **OCO** legs, and a bracket's two exits, cancel
  each other at the first fill of either.
- Orders outside their session are accepted and held until it opens.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from brokers.paper.restore import RestoringDesk
from brokers.paper.working import EXTENDED, REGULAR, SCALE, Mode, Working
from server.trading.errors import OrderNotCancelable
from server.trading.events import OrderEvent, Reason
from server.trading.model import Order, OrderType
from server.trading.money import (
    CTX,
    canonical_price,
    price_of_ticks,
    ticks_from_feed,
)
from server.trading.states import EventKind, OrderStatus, next_status
from streams.events import MarketEvent, Quote, Trade

E = EventKind
S = OrderStatus


@dataclass(frozen=True, slots=True)
class OrderView:
    """An order as the engine sees it now."""

    order: Order
    status: OrderStatus
    qty: Decimal | None
    filled_qty: Decimal
    avg_fill_price: Decimal | None
    #: A stop's price; for a trailing stop, where its trail is now (None until it has
    #: a water mark).
    stop_price: Decimal | None
    #: A trailing stop's high (sell) or low (buy) water mark.
    water_price: Decimal | None
    triggered: bool


class MatchingEngine(RestoringDesk):
    def submit(self, orders: Sequence[Order], now_ms: int | None = None) -> list[OrderEvent]:
        """Take one order, or the orders of one bracket/OCO/OTO request (``build_orders``
        order). An id the engine already has is ignored (submitting is idempotent)."""
        self._clock(now_ms)
        fresh = [o for o in orders if o.id not in self._orders]
        if fresh:
            self._submit_group(fresh)
        return self._flush()

    def cancel(self, order_id: str, now_ms: int | None = None) -> list[OrderEvent]:
        """Answer a cancel request (the caller has recorded ``cancel_requested``):
        ``canceled``, or ``cancel_rejected`` if the order is already done."""
        self._clock(now_ms)
        w = self._get(order_id)
        if w.status is S.REJECTED:
            raise OrderNotCancelable(f"order {order_id} was rejected", status=str(w.status))
        if w.done:
            self._emit(w, E.CANCEL_REJECTED, reason=Reason.ALREADY_DONE)
            return self._flush()
        # The request the caller recorded, so that the answer is read against it.
        w.status = next_status(w.status, E.CANCEL_REQUESTED)
        self._end(w, E.CANCELED, Reason.CANCEL_REQUESTED)
        return self._flush()

    def replace(
        self, order_id: str, replacement: Order, now_ms: int | None = None
    ) -> list[OrderEvent]:
        """Answer a replace request (recorded as ``replace_requested``): the old order
        ``replaced`` and the replacement ``new`` (or ``accepted``/``held``), or the old
        one ``replace_rejected`` and the replacement ``rejected``.

        ``replacement.spec.qty`` is the new *total* quantity, what the replaced order
        filled included: the replacement works ``qty - filled`` (FIX semantics, so a
        fill racing the request cannot over-fill).
        """
        self._clock(now_ms)
        w = self._get(order_id)
        if replacement.id in self._orders:
            raise ValueError(f"order id {replacement.id} is already used")
        refusal = self._replace_refusal(w, replacement)
        if refusal is not None:
            reason = refusal
            if not w.done:
                w.status = next_status(w.status, E.REPLACE_REQUESTED)
            self._emit(w, E.REPLACE_REJECTED, reason=reason)
            new = self._new_working(replacement)
            self._emit(new, E.REJECTED, reason=reason)
            new.mode = Mode.DONE
            return self._flush()
        self._do_replace(w, replacement)
        return self._flush()

    def restore(
        self,
        ledger: Iterable[tuple[Order, Sequence[OrderEvent]]],
        *,
        next_seq: int,
        now_ms: int,
        water_marks: Mapping[str, Decimal | None] | None = None,
        market: Iterable[MarketEvent] = (),
    ) -> list[OrderEvent]:
        """Take back the orders of a previous engine after a restart, from their ledgers
        (each order with its recorded events, in order), so that matching continues as
        if the engine had never stopped. Call it once, on a new engine, before anything
        else. ``docs/trading.md`` ("Restart") has the contract; in short:

        - Pass every order that is open, and the done orders they refer to (the orders
          an open replacement replaced, the entry of an open leg); passing done orders
          also keeps a re-submit of their id a no-op and answers a cancel/replace of
          them as before. Orders the engine never acknowledged (``pending_new``) are
          not taken: their submit is still to be sent.
        - ``next_seq``: the seq of the next event (above every seq in the ledger).
        - ``now_ms``: the engine's clock now; what fell due before it happens.
        - ``water_marks``: per trailing stop id, its high (sell) / low (buy) water
          mark, or ``None`` for one with no trade since it started trailing. A trailing
          stop without an entry trails afresh from the restart.
        - ``market``: the latest quote and trades per symbol, as what the engine knows
          of the market (nothing is matched against them).

        Returns the events the ledger lacks (usually none): what the old engine had
        decided but was not recorded, and what fell due up to ``now_ms``. ``ValueError``
        for an id restored twice or already in the engine, a ``next_seq`` that would
        reuse a seq, an inconsistent ledger or a missing order it needs.
        """
        return self._restore(ledger, next_seq, now_ms, water_marks or {}, market)

    def on_event(self, event: MarketEvent) -> list[OrderEvent]:
        if type(event) is Quote:
            return self.on_quote(event)
        if type(event) is Trade:
            return self.on_trade(event)
        return []

    def on_quote(self, q: Quote) -> list[OrderEvent]:
        t = q.t
        if t >= self._horizon:
            self._run_schedule(t)
        now = self.now_ms = t if t > self.now_ms else self.now_ms
        st = self._symbols.get(q.sym)
        if st is None:
            st = self._symbol(q.sym)
        st.bid = ticks_from_feed(q.bp)
        st.ask = ticks_from_feed(q.ap)
        st.bid_avail = q.bs
        st.ask_avail = q.ask_size
        st.quote_ms = now
        working = st.working
        if not (working[0] or working[1]):
            return self._flush() if self._out else []
        session = self._session
        if working[0] and session.open_ms <= now < session.close_ms:
            self._quote_window(st, REGULAR)
        if working[1] and session.pre_open_ms <= now < session.post_close_ms:
            self._quote_window(st, EXTENDED)
        return self._flush() if self._out else []

    def on_trade(self, tr: Trade) -> list[OrderEvent]:
        t = tr.t
        if t >= self._horizon:
            self._run_schedule(t)
        now = self.now_ms = t if t > self.now_ms else self.now_ms
        st = self._symbols.get(tr.sym)
        if st is None:
            st = self._symbol(tr.sym)
        p = ticks_from_feed(tr.p)
        if not p:
            return self._flush() if self._out else []
        st.last = p
        st.last_ms = now
        session = self._session
        regular = session.open_ms <= now < session.close_ms
        if regular:
            st.reg_last = p
            st.reg_last_ms = now
            if st.opening:
                self._opening_auction(st, p, session)
        working = st.working
        if working[0] and regular:
            self._trade_window(st, REGULAR, p, tr.s)
        if working[1] and session.pre_open_ms <= now < session.post_close_ms:
            self._trade_window(st, EXTENDED, p, tr.s)
        return self._flush() if self._out else []

    def advance(self, now_ms: int) -> list[OrderEvent]:
        """Move the clock to ``now_ms``: opens, closes, expiries and auctions up to it."""
        self._clock(now_ms)
        return self._flush()

    def order(self, order_id: str) -> OrderView | None:
        w = self._orders.get(order_id)
        return None if w is None else self._view(w)

    def open_orders(self) -> list[OrderView]:
        """Orders not done, in submission order."""
        return [self._view(w) for w in self._orders.values() if not w.done]

    def symbols(self) -> list[str]:
        """Symbols with open orders: the market data the engine needs."""
        return sorted(s for s, st in self._symbols.items() if st.open_orders)

    def _view(self, w: Working) -> OrderView:
        avg = canonical_price(CTX.divide(w.filled_value, w.filled)) if w.filled else None
        stop = w.order.spec.stop_price
        water_price = None
        water = self._water(w)
        if water is None and w.mode is Mode.WAITING:
            water = w.water  # carried over a replace, until it works again
        if w.type is OrderType.TRAILING_STOP and water is not None:
            water_price = price_of_ticks(water)
            key = w.trail_key(-water if w.is_buy else water, w.is_buy)
            stop = canonical_price(Decimal(-key if w.is_buy else key) / SCALE / 10_000)
        return OrderView(
            order=w.order,
            status=w.status,
            qty=w.qty,
            filled_qty=w.filled,
            avg_fill_price=avg,
            stop_price=stop,
            water_price=water_price,
            triggered=w.triggered,
        )
