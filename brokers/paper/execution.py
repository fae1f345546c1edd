"""Market data and fills: how quotes and trades fill the orders working in a symbol
(the rules are in ``brokers.paper.matching``'s docstring)."""

from __future__ import annotations

from decimal import Decimal

from brokers.paper.core import EngineCore
from brokers.paper.symbols import SymbolState
from brokers.paper.working import REGULAR, SCALE, Mode, Working
from server.trading.calendar import Session
from server.trading.events import Fill, Reason
from server.trading.model import TimeInForce
from server.trading.money import CTX, canonical_price, canonical_qty, floor_qty, price_of_ticks
from server.trading.states import EventKind

E = EventKind


class Execution(EngineCore):
    def _fresh(self, st: SymbolState, window: int) -> bool:
        """A quote of the current session (for this window) is known."""
        session = self._session
        start = session.open_ms if window == REGULAR else session.pre_open_ms
        return st.quote_ms >= start and st.quote_ms < session.post_close_ms

    def _quote_window(self, st: SymbolState, window: int) -> None:
        queue = st.markets[window]
        if queue:
            for w in list(queue):
                if w.mode is Mode.MARKET:
                    self._take(w, st)
        book = st.books[window]
        if book is None:
            return
        # Resting limits the quote reaches fill at their limit, up to the displayed size.
        if st.ask:
            while st.ask_avail > 0:
                buyer = book.best_buy_limit()
                if buyer is None or buyer.limit < st.ask:
                    break
                qty = min(self._left(buyer, buyer.limit), Decimal(st.ask_avail))
                self._fill(buyer, st, qty, buyer.limit, "ask")
        if st.bid:
            while st.bid_avail > 0:
                seller = book.best_sell_limit()
                if seller is None or seller.limit > st.bid:
                    break
                qty = min(self._left(seller, seller.limit), Decimal(st.bid_avail))
                self._fill(seller, st, qty, seller.limit, "bid")

    def _trade_window(self, st: SymbolState, window: int, p: int, size: int) -> None:
        book = st.books[window]
        if book is not None:
            # Resting limits the trade went through fill at their limit, up to its size.
            buyer = book.best_buy_limit()
            if buyer is not None and buyer.limit > p:
                avail = Decimal(size)
                while buyer is not None and buyer.limit > p and avail > 0:
                    qty = min(self._left(buyer, buyer.limit), avail)
                    avail -= qty
                    self._fill(buyer, st, qty, buyer.limit, None)
                    buyer = book.best_buy_limit()
            seller = book.best_sell_limit()
            if seller is not None and seller.limit < p:
                avail = Decimal(size)
                while seller is not None and seller.limit < p and avail > 0:
                    qty = min(self._left(seller, seller.limit), avail)
                    avail -= qty
                    self._fill(seller, st, qty, seller.limit, None)
                    seller = book.best_sell_limit()
            triggered = book.trade(p)
            if triggered:
                self._trigger(st, triggered)
        queue = st.markets[window]
        if queue and not self._fresh(st, window):
            # No quote of this session yet: market orders fill at the prints.
            left = {True: Decimal(size), False: Decimal(size)}
            for w in list(queue):
                if w.mode is not Mode.MARKET or left[w.is_buy] <= 0:
                    continue
                price = self._slip(p, w.is_buy)
                qty = min(self._left(w, price), left[w.is_buy])
                left[w.is_buy] -= qty
                self._fill(w, st, qty, price, None)

    def _trigger(self, st: SymbolState, triggered: list[tuple[int, Working]]) -> None:
        # Buys in the order an upward move reaches them, then sells downward; seq
        # breaks ties.
        triggered.sort(key=lambda e: (not e[1].is_buy, e[0] if e[1].is_buy else -e[0], e[1].seq))
        for key, w in triggered:
            st.working[w.window] -= 1
            w.mode = Mode.WAITING
            w.triggered = True
            stop = Decimal(key) / SCALE / 10_000
            self._emit(w, E.TRIGGERED, stop_price=canonical_price(stop))
            self._activate(w)

    def _opening_auction(self, st: SymbolState, p: int, session: Session) -> None:
        due = [w for w in st.opening if w.session is not None and w.session.open_ms <= self.now_ms]
        for w in due:
            self._auction_fill(w, st, p)

    def _closing_auction(self, w: Working) -> None:
        st = self._symbols[w.order.symbol]
        session = w.session
        assert session is not None
        if st.reg_last and session.open_ms <= st.reg_last_ms < session.close_ms:
            self._auction_fill(w, st, st.reg_last)
        else:
            self._end(w, E.EXPIRED, Reason.AUCTION_MISSED)

    def _auction_fill(self, w: Working, st: SymbolState, p: int) -> None:
        if w.limit and (p > w.limit if w.is_buy else p < w.limit):
            self._end(w, E.EXPIRED, Reason.AUCTION_MISSED)
            return
        self._emit(w, E.NEW)
        assert w.qty is not None
        self._fill(w, st, w.qty, p, None)

    def _left(self, w: Working, price_ticks: int) -> Decimal:
        """What ``w`` can still take at ``price_ticks``: shares, or for a notional order
        what its remaining dollars buy (to the billionth)."""
        if w.qty is not None:
            return w.qty - w.filled
        assert w.notional_left is not None
        return floor_qty(CTX.divide(w.notional_left * 10_000, Decimal(price_ticks)))

    def _slip(self, ticks: int, buy: bool) -> int:
        bps = self.config.slippage_bps
        if not bps:
            return ticks
        delta = -(-ticks * bps // 10_000)
        raw = ticks + delta if buy else ticks - delta
        step = 100 if raw >= 10_000 else 1
        if buy:
            return -(-raw // step) * step
        return max(1, raw // step * step)

    def _take(self, w: Working, st: SymbolState) -> None:
        """``w`` takes liquidity from the quote, if it may and there is some."""
        if not self._fresh(st, w.window):
            if w.order.spec.time_in_force is TimeInForce.FOK:
                self._end(w, E.CANCELED, Reason.NO_LIQUIDITY)
            return
        buy = w.is_buy
        price = st.ask if buy else st.bid
        avail = st.ask_avail if buy else st.bid_avail
        if not price or avail <= 0 or (w.limit and (price > w.limit if buy else price < w.limit)):
            if w.order.spec.time_in_force is TimeInForce.FOK:
                self._end(w, E.CANCELED, Reason.FOK_NOT_FILLABLE if price else Reason.NO_LIQUIDITY)
            return
        market = w.mode is Mode.MARKET
        fill_price = self._slip(price, buy) if market else price
        left = self._left(w, fill_price)
        if w.order.spec.time_in_force is TimeInForce.FOK and left > avail:
            self._end(w, E.CANCELED, Reason.FOK_NOT_FILLABLE)
            return
        self._fill(w, st, min(left, avail), fill_price, "ask" if buy else "bid")

    def _fill(
        self, w: Working, st: SymbolState, qty: Decimal | int, price_ticks: int, side: str | None
    ) -> None:
        qty = Decimal(qty)
        if side == "ask":
            st.ask_avail -= qty
        elif side == "bid":
            st.bid_avail -= qty
        if qty <= 0:
            return
        price = price_of_ticks(price_ticks)
        w.fill_count += 1
        spec = w.order.spec
        commission = self.config.commission.of(spec.side, qty, price, w.fill_count == 1)
        w.filled += qty
        w.filled_value += CTX.multiply(qty, price)
        complete = w.qty is not None and w.filled == w.qty
        if w.notional_left is not None:
            w.notional_left -= CTX.multiply(qty, price)
            if self._left(w, price_ticks) <= 0:
                w.qty = w.filled
                complete = True
        fill = Fill(
            id=f"{w.order.id}-{w.fill_count}",
            order_id=w.order.id,
            symbol=spec.symbol,
            side=spec.side,
            qty=canonical_qty(qty),
            price=price,
            commission=commission,
            time_ms=self.now_ms,
        )
        if complete:
            self._finish(w)
            self._emit(w, E.FILL, fill=fill)
            self._entry_ended(w)  # held legs start, for what filled
        else:
            self._emit(w, E.PARTIAL_FILL, fill=fill)
        if w.sibling is not None and w.fill_count == 1:
            sibling = self._orders[w.sibling]
            if not sibling.done:
                self._end(sibling, E.CANCELED, Reason.OCO_SIBLING_FILLED, w.order.id)
