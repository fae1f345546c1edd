"""What the matching engine knows about one symbol: its top of book, its last trades,
and the orders working in it."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from brokers.paper.books import Book
from brokers.paper.working import Working


class SymbolState:
    __slots__ = (
        "ask",
        "ask_avail",
        "bid",
        "bid_avail",
        "book_factory",
        "books",
        "closing",
        "last",
        "last_ms",
        "markets",
        "open_orders",
        "opening",
        "quote_ms",
        "reg_last",
        "reg_last_ms",
        "symbol",
        "working",
    )

    def __init__(self, symbol: str, book_factory: Callable[[], Book]) -> None:
        self.symbol = symbol
        self.book_factory = book_factory
        # Top of book in ticks (0: no price on that side) and the shares still
        # available there to our orders until the next quote (fills consume them).
        self.bid = 0
        self.ask = 0
        self.bid_avail: Decimal | int = 0
        self.ask_avail: Decimal | int = 0
        self.quote_ms = 0
        self.last = 0
        self.last_ms = 0
        #: The last trade in a regular session: the closing auction's price.
        self.reg_last = 0
        self.reg_last_ms = 0
        #: Per window (regular, extended): resting orders, and market orders waiting
        #: for liquidity (FIFO).
        self.books: list[Book | None] = [None, None]
        self.markets: list[list[Working]] = [[], []]
        #: OPG orders in auction order; CLS orders (executed by the schedule).
        self.opening: list[Working] = []
        self.closing: list[Working] = []
        #: Orders in books and market queues, per window: zero means a tick has nothing
        #: to do there.
        self.working = [0, 0]
        #: Open orders of any kind (the engine's interest in this symbol's data).
        self.open_orders = 0

    def book(self, window: int) -> Book:
        book = self.books[window]
        if book is None:
            book = self.books[window] = self.book_factory()
        return book
