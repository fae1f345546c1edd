"""What the order service reads of the market: a symbol's view for the pre-trade checks,
and marks for positions. Prices come from the feed as floats; they become exact
decimals here, at the feed's own precision (``server.trading.money.price_from_feed``).

The mark of a symbol is its most recent price: the last trade, or the quote midpoint
if a quote came after it (so positions move with every quote, and a symbol that only
quotes is still valued at the market).
"""

from __future__ import annotations

from decimal import Decimal

from server.market.directory import SymbolDirectory
from server.market.state import MarketState
from server.trading.money import canonical_price, price_from_feed
from server.trading.risk import MarketView
from streams.events import Quote, Trade


def _price(x: float) -> Decimal:
    """A feed price as the API shows prices (cents from $1)."""
    return canonical_price(price_from_feed(x))


class MarketAccess:
    def __init__(self, state: MarketState, directory: SymbolDirectory) -> None:
        self._state = state
        self._directory = directory

    def view(self, symbol: str) -> MarketView:
        if self._directory.get(symbol) is None and self._state.get(symbol) is None:
            return MarketView(symbol, tradable=False, reason="unknown symbol")
        last = bid = ask = None
        s = self._state.get(symbol)
        if s is not None:
            if s.last_trade is not None:
                trade = s.last_trade.event
                assert isinstance(trade, Trade)
                last = _price(trade.p)
            if s.last_quote is not None:
                quote = s.last_quote.event
                assert isinstance(quote, Quote)
                bid = _price(quote.bp) if quote.bp else None
                ask = _price(quote.ap) if quote.ap else None
        return MarketView(symbol, last=last, bid=bid, ask=ask)

    def mark(self, symbol: str) -> Decimal | None:
        s = self._state.get(symbol)
        if s is None:
            return None
        trade = s.last_trade.event if s.last_trade is not None else None
        quote = s.last_quote.event if s.last_quote is not None else None
        quoted = isinstance(quote, Quote) and quote.bp > 0 and quote.ap > 0
        if quoted and (not isinstance(trade, Trade) or quote.t > trade.t):  # type: ignore[union-attr]
            mid = (price_from_feed(quote.bp) + price_from_feed(quote.ap)) / 2  # type: ignore[union-attr]
            return canonical_price(mid)
        if isinstance(trade, Trade):
            return _price(trade.p)
        return None

    def marks(self, symbols: list[str] | set[str] | frozenset[str]) -> dict[str, Decimal]:
        out = {}
        for symbol in symbols:
            mark = self.mark(symbol)
            if mark is not None:
                out[symbol] = mark
        return out
