"""Market state per symbol: last trade, last quote, recent trades.

Pure and synchronous: the ingest applies each decoded event exactly once, and the
GraphQL layer reads snapshots. Nothing here waits or does I/O.

Sequencing: Polygon's ``q`` increases per symbol and channel but is not contiguous,
so it detects reordering, not gaps. An event whose ``q`` is not greater than the
last one seen on the same connection is dropped. ``q`` is only comparable within
one upstream session (a restarted replay starts again at 1), so the ingest calls
``reset_sequences`` on every new upstream connection.

The last trade is the last print that may set the consolidated last price
(``streams.conditions``: an odd lot or an average-price print does not); every print is
kept in the recent trades. The day's statistics are the day's bar
(``server.market.bars``), built by the same rules, so the two can never disagree.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

from streams.conditions import LAST
from streams.events import Quote, Received, Trade


class SymbolState:
    __slots__ = (
        "last_quote",
        "last_trade",
        "quote_q",
        "recent_trades",
        "symbol",
        "trade_q",
        "updated_ns",
    )

    def __init__(self, symbol: str, trades_kept: int) -> None:
        self.symbol = symbol
        self.last_trade: Received | None = None
        self.last_quote: Received | None = None
        self.recent_trades: deque[Received] = deque(maxlen=trades_kept)
        self.trade_q = 0
        self.quote_q = 0
        self.updated_ns = 0

    def is_stale(self, now_ns: int, stale_after_ns: int) -> bool:
        return self.updated_ns == 0 or now_ns - self.updated_ns > stale_after_ns

    def trades(self, limit: int) -> list[Received]:
        """The most recent trades, newest first."""
        out: list[Received] = []
        for item in reversed(self.recent_trades):
            if len(out) >= limit:
                break
            out.append(item)
        return out


class MarketState:
    """All symbols' state in this process. Symbols appear on first use."""

    def __init__(self, trades_kept: int = 1000) -> None:
        self._symbols: dict[str, SymbolState] = {}
        self._trades_kept = trades_kept
        #: Events dropped because their sequence number went backwards.
        self.reordered = 0

    def get(self, symbol: str) -> SymbolState | None:
        return self._symbols.get(symbol)

    def state(self, symbol: str) -> SymbolState:
        st = self._symbols.get(symbol)
        if st is None:
            st = self._symbols[symbol] = SymbolState(symbol, self._trades_kept)
        return st

    def apply(self, item: Received) -> bool:
        """Apply one received event. ``False`` means it was dropped as reordered (its
        ``q`` is not above the last one of its symbol and channel)."""
        ev = item.event
        kind = type(ev)
        if kind is not Quote and kind is not Trade:
            return True  # aggregates carry no per-symbol state; they are published as is
        st = self._symbols.get(ev.sym)
        if st is None:
            st = self.state(ev.sym)
        q: int = ev.q  # type: ignore[union-attr]
        if kind is Quote:
            if q and q <= st.quote_q:
                self.reordered += 1
                return False
            st.quote_q = q
            st.last_quote = item
        else:
            if q and q <= st.trade_q:
                self.reordered += 1
                return False
            st.trade_q = q
            if item.flags & LAST:
                st.last_trade = item
            st.recent_trades.append(item)
        st.updated_ns = item.received_ns
        return True

    def reset_sequences(self) -> None:
        for st in self._symbols.values():
            st.trade_q = 0
            st.quote_q = 0

    def __iter__(self) -> Iterator[SymbolState]:
        return iter(self._symbols.values())

    def symbols(self) -> Iterable[str]:
        return self._symbols.keys()
