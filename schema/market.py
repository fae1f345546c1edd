"""Market data: quotes, trades, snapshots, symbols (queries and subscriptions)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, Callable
from datetime import date

import strawberry

from schema.context import Info
from schema.scalars import Long, Timestamp, ms_from_ns
from schema.subscription_quota import admit_subscription, releaser
from server.delivery.multiplex import Feed
from server.errors import InvalidInput
from server.market import prices
from server.market.state import SymbolState
from server.market.timeframes import Bar as BarRecord
from server.market.trading_day import day_window
from server.services.container import Services
from streams.events import Quote as QuoteEvent
from streams.events import Received
from streams.events import Trade as TradeEvent

MAX_SYMBOLS_PER_REQUEST = 100
MAX_THROTTLE_MS = 60_000
MIN_WINDOW_MS = 5
MAX_WINDOW_MS = 10_000
DEFAULT_WINDOW_MS = 20
#: Batches kept for a reader that falls behind (oldest dropped first).
BATCH_QUEUE = 100


@strawberry.type(description="Top of book as the feed gives it. Sizes are in shares.")
class Quote:
    symbol: str
    bid_price: float
    bid_size: Long
    bid_exchange: int
    ask_price: float
    ask_size: Long
    ask_exchange: int
    condition: int
    indicators: list[int]
    tape: int
    sequence: Long = strawberry.field(description="Polygon's per-symbol sequence number (q).")
    exchange_time: Timestamp = strawberry.field(description="When the exchange stamped it.")
    received_at: Timestamp = strawberry.field(description="When this server received it.")
    snapshot: bool = strawberry.field(
        description="True for the current state sent first on subscribe."
    )

    @strawberry.field(
        description="(bid + ask) / 2, when both sides are quoted; exact to one "
        "decimal more than the feed's prices."
    )
    def mid_price(self) -> float | None:
        if self.bid_price > 0 and self.ask_price > 0:
            return prices.mid_price(self.bid_price, self.ask_price)
        return None

    @strawberry.field(description="ask - bid, when both sides are quoted.")
    def spread(self) -> float | None:
        if self.bid_price > 0 and self.ask_price > 0:
            return prices.spread(self.bid_price, self.ask_price)
        return None

    @classmethod
    def of(cls, item: Received, snapshot: bool = False) -> Quote:
        q: QuoteEvent = item.event  # type: ignore[assignment]
        return cls(
            symbol=q.sym,
            bid_price=q.bp,
            bid_size=Long(q.bs),
            bid_exchange=q.bx,
            ask_price=q.ap,
            ask_size=Long(q.ask_size),
            ask_exchange=q.ax,
            condition=q.c,
            indicators=list(q.i),
            tape=q.z,
            sequence=Long(q.q),
            exchange_time=Timestamp(float(q.t)),
            received_at=ms_from_ns(item.received_ns),
            snapshot=snapshot,
        )


@strawberry.type(description="One print on the tape. Size is in shares.")
class Trade:
    symbol: str
    price: float
    size: Long
    exchange: int
    id: str = strawberry.field(
        description="The trade id from the exchange (not unique across exchanges)."
    )
    conditions: list[int]
    tape: int
    sequence: Long
    exchange_time: Timestamp
    received_at: Timestamp
    snapshot: bool = strawberry.field(
        description="True for the last trade sent first on subscribe (not a new print)."
    )
    dropped_before: int = strawberry.field(
        description=(
            "Trades this subscriber missed just before this one because it read too "
            "slowly (the oldest are dropped first). Re-read recent trades with Query.trades."
        )
    )

    @classmethod
    def of(cls, item: Received, snapshot: bool = False, dropped_before: int = 0) -> Trade:
        t: TradeEvent = item.event  # type: ignore[assignment]
        return cls(
            symbol=t.sym,
            price=t.p,
            size=Long(t.s),
            exchange=t.x,
            id=t.i,
            conditions=list(t.c),
            tape=t.z,
            sequence=Long(t.q),
            exchange_time=Timestamp(float(t.t)),
            received_at=ms_from_ns(item.received_ns),
            snapshot=snapshot,
            dropped_before=dropped_before,
        )


@strawberry.type(
    description="The symbol's trades on one New York calendar day: the day's bar (every "
    "print counted by the consolidated tape's condition rules, docs/market-data.md)."
)
class DayStats:
    date: date
    open: float
    high: float
    low: float
    close: float
    volume: Long
    vwap: float | None = strawberry.field(description="Trade-weighted: notional / volume.")
    trades: Long
    final: bool = strawberry.field(description="True once the day has closed.")

    @classmethod
    def of(cls, bar: BarRecord) -> DayStats:
        return cls(
            date=day_window(bar.start_ms).day,
            open=bar.open,
            high=bar.high,
            low=bar.low,
            close=bar.close,
            volume=Long(bar.volume),
            vwap=prices.average_price(bar.vwap) if bar.volume else None,
            trades=Long(bar.trades),
            final=bar.final,
        )


def day_bar(services: Services, symbol: str) -> BarRecord | None:
    """The day's bar: forming, or the last one closed."""
    analytics = services.analytics
    return analytics.book.day(symbol) if analytics is not None else None


@strawberry.type(description="Everything this server currently knows about one symbol.")
class MarketSnapshot:
    symbol: str
    quote: Quote | None
    last_trade: Trade | None
    day: DayStats | None
    updated_at: Timestamp | None
    stale: bool = strawberry.field(
        description="No update for longer than TICKGRAPH_STALE_AFTER seconds (or never)."
    )


@strawberry.type
class SymbolInfo:
    symbol: str
    name: str
    exchange: str
    in_universe: bool = strawberry.field(
        description="Always streamed (TICKGRAPH_SYMBOLS); others stream while subscribed."
    )
    subscribers: int = strawberry.field(
        description="Live subscriptions to this symbol in this server process."
    )


def _snapshot(info: Info, symbol: str, st: SymbolState | None) -> MarketSnapshot:
    services = info.context.services
    settings = services.settings
    day = day_bar(services, symbol)
    if st is None:
        return MarketSnapshot(
            symbol=symbol,
            quote=None,
            last_trade=None,
            day=DayStats.of(day) if day else None,
            updated_at=None,
            stale=True,
        )
    return MarketSnapshot(
        symbol=symbol,
        quote=Quote.of(st.last_quote) if st.last_quote else None,
        last_trade=Trade.of(st.last_trade) if st.last_trade else None,
        day=DayStats.of(day) if day else None,
        updated_at=ms_from_ns(st.updated_ns) if st.updated_ns else None,
        stale=st.is_stale(time.time_ns(), int(settings.stale_after_s * 1e9)),
    )


@strawberry.type
class MarketQuery:
    @strawberry.field(description="The latest quote, or null if none has arrived yet.")
    def quote(self, info: Info, symbol: str) -> Quote | None:
        services = info.context.services
        st = services.state.get(services.directory.resolve(symbol))
        return Quote.of(st.last_quote) if st and st.last_quote else None

    @strawberry.field(description="Latest quotes, in the order asked; null where none yet.")
    def quotes(self, info: Info, symbols: list[str]) -> list[Quote | None]:
        services = info.context.services
        out: list[Quote | None] = []
        for sym in services.directory.resolve_many(symbols, limit=MAX_SYMBOLS_PER_REQUEST):
            st = services.state.get(sym)
            out.append(Quote.of(st.last_quote) if st and st.last_quote else None)
        return out

    @strawberry.field(description="Recent trades, newest first.")
    def trades(self, info: Info, symbol: str, limit: int = 50) -> list[Trade]:
        services = info.context.services
        kept = services.settings.trades_kept
        if not 1 <= limit <= kept:
            raise InvalidInput(f"limit must be between 1 and {kept}", limit=kept)
        st = services.state.get(services.directory.resolve(symbol))
        return [Trade.of(item) for item in st.trades(limit)] if st else []

    @strawberry.field(description="Last quote, last trade and the day's statistics.")
    def snapshot(self, info: Info, symbol: str) -> MarketSnapshot:
        services = info.context.services
        sym = services.directory.resolve(symbol)
        return _snapshot(info, sym, services.state.get(sym))

    @strawberry.field(description="Snapshots of several symbols, in the order asked.")
    def snapshots(self, info: Info, symbols: list[str]) -> list[MarketSnapshot]:
        services = info.context.services
        syms = services.directory.resolve_many(symbols, limit=MAX_SYMBOLS_PER_REQUEST)
        return [_snapshot(info, s, services.state.get(s)) for s in syms]

    @strawberry.field(description="The symbols this server knows.")
    def symbols(self, info: Info) -> list[SymbolInfo]:
        services = info.context.services
        interest = services.mux.subscribers()
        return [
            SymbolInfo(
                symbol=s.symbol,
                name=s.name,
                exchange=s.exchange,
                in_universe=s.in_universe,
                subscribers=interest.get(s.symbol, 0),
            )
            for s in services.directory.all()
        ]


def _throttle_seconds(throttle_ms: int) -> float:
    if not 0 <= throttle_ms <= MAX_THROTTLE_MS:
        raise InvalidInput(f"throttleMs must be between 0 and {MAX_THROTTLE_MS}")
    return throttle_ms / 1000


def _window_seconds(window_ms: int) -> float:
    if not MIN_WINDOW_MS <= window_ms <= MAX_WINDOW_MS:
        raise InvalidInput(f"windowMs must be between {MIN_WINDOW_MS} and {MAX_WINDOW_MS}")
    return window_ms / 1000


@strawberry.type(description="The quotes of one coalescing window, oldest first.")
class QuoteBatch:
    quotes: list[Quote]
    dropped_before: int = strawberry.field(
        description=(
            "Batches this subscriber missed just before this one because it read too "
            "slowly (the oldest are dropped first)."
        )
    )


@strawberry.type
class MarketSubscription:
    @strawberry.subscription(
        description=(
            "Quotes of the given symbols: the current quote of each first (snapshot: true), "
            "then every update. A slow reader gets the newest quote per symbol, never a "
            "backlog. throttleMs limits updates to one per symbol per interval."
        )
    )
    async def quotes(
        self, info: Info, symbols: list[str], throttle_ms: int = 0
    ) -> AsyncIterable[Quote]:
        services = info.context.services
        syms = services.directory.resolve_many(symbols, limit=MAX_SYMBOLS_PER_REQUEST, stream=True)
        throttle_s = _throttle_seconds(throttle_ms)
        lease = await admit_subscription(info, syms)
        return Feed(
            attach=_attach(services, "Q", syms),
            render=_render_quote,
            snapshot=_last_quotes(services, syms),
            key=_symbol,
            throttle_s=throttle_s,
            symbols=tuple(syms),
            release=releaser(lease),
        )

    @strawberry.subscription(
        description=(
            "Every quote of the given symbols, coalesced: one message per windowMs "
            "holding the window's quotes in order (none conflated), the current quotes "
            "first (snapshot: true). For clients that want every tick at high rates: "
            "fewer, larger messages cost far less than one message per quote."
        )
    )
    async def quote_batches(
        self, info: Info, symbols: list[str], window_ms: int = DEFAULT_WINDOW_MS
    ) -> AsyncIterable[QuoteBatch]:
        services = info.context.services
        syms = services.directory.resolve_many(symbols, limit=MAX_SYMBOLS_PER_REQUEST, stream=True)
        window_s = _window_seconds(window_ms)
        lease = await admit_subscription(info, syms)
        current = _last_quotes(services, syms)
        return Feed(
            attach=_attach(services, "Q", syms),
            render=lambda items, snapshot, dropped: QuoteBatch(
                quotes=[Quote.of(item, snapshot) for item in items], dropped_before=dropped
            ),
            snapshot=lambda: [quotes] if (quotes := current()) else [],
            window_s=window_s,
            queue_size=BATCH_QUEUE,
            symbols=tuple(syms),
            release=releaser(lease),
        )

    @strawberry.subscription(
        description=(
            "Trades of the given symbols: the last trade of each first (snapshot: true), then "
            "every print. A reader too slow to keep up loses the oldest trades and is told "
            "how many in droppedBefore."
        )
    )
    async def trades(self, info: Info, symbols: list[str]) -> AsyncIterable[Trade]:
        services = info.context.services
        syms = services.directory.resolve_many(symbols, limit=MAX_SYMBOLS_PER_REQUEST, stream=True)
        lease = await admit_subscription(info, syms)
        state = services.state
        return Feed(
            attach=_attach(services, "T", syms),
            render=Trade.of,
            snapshot=lambda: [
                st.last_trade
                for sym in syms
                if (st := state.get(sym)) is not None and st.last_trade is not None
            ],
            queue_size=services.settings.ws_trade_queue,
            symbols=tuple(syms),
            release=releaser(lease),
        )


def _render_quote(item: Received, snapshot: bool, _dropped: int) -> Quote:
    # One function for every quotes subscription: groups of one document share payloads.
    return Quote.of(item, snapshot)


def _symbol(item: Received) -> str:
    return item.event.sym


def _attach(
    services: Services, channel: str, syms: list[str]
) -> Callable[[Callable[[Received], None]], Callable[[], None]]:
    def attach(sink: Callable[[Received], None]) -> Callable[[], None]:
        return services.hub.attach(channel, syms, sink).close

    return attach


def _last_quotes(services: Services, syms: list[str]) -> Callable[[], list[Received]]:
    state = services.state

    def current() -> list[Received]:
        return [
            st.last_quote
            for sym in syms
            if (st := state.get(sym)) is not None and st.last_quote is not None
        ]

    return current
