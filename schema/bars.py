"""Bars and technical indicators: history, current values, live streams."""

from __future__ import annotations

import math
from collections.abc import AsyncIterable, Callable
from enum import Enum
from typing import Annotated

import strawberry

from schema.context import Info
from schema.pagination import DEFAULT_PAGE, PageInfo, decode_position, encode_position, page_size
from schema.scalars import Long, Timestamp
from schema.subscription_quota import admit_subscription, releaser
from server.analytics import (
    Analytics,
    IndicatorSlot,
    IndicatorUpdate,
    bars_channel,
    indicator_channel,
)
from server.bar_recovery import Gap as GapRecord
from server.delivery.multiplex import Feed
from server.errors import InvalidInput, LimitExceeded
from server.indicators import IndicatorKind, IndicatorSpec
from server.market import prices
from server.market.bars import BarEvent as BarEventRecord
from server.market.bars import BarEventKind as BarEventKindRecord
from server.market.timeframes import Bar as BarRecord
from server.market.timeframes import Timeframe
from server.services.container import Services
from server.storage.bar_pages import OPEN_END, OPEN_START, stored_page

MAX_BARS = 5_000
MAX_SPECS = 20

# The domain enums are the GraphQL enums (registered in place; GraphQL names are the
# members' names), so resolvers get domain values with no conversion.
strawberry.enum(
    Timeframe,
    name="Timeframe",
    description="Bar interval: S1 (1 second), M1, M5, M15 (minutes), H1 (hour), D1 "
    "(New York trading day).",
)
strawberry.enum(
    IndicatorKind,
    name="IndicatorKind",
    description="SMA, EMA, WMA, RSI (Wilder), MACD, BBANDS (Bollinger), ATR, STOCH, "
    "VWAP (the session's trade-weighted VWAP, New York day: equals the day's vwap), "
    "VWAP_HLC3 (session VWAP of each bar's typical price (H+L+C)/3, as charting "
    "packages compute it), OBV (anchored: from the New York day's first bar intraday, "
    "the year's first on daily bars), ADX (+DI/-DI from bar n, ADX from bar 2n-1), "
    "DONCHIAN.",
)


@strawberry.enum
class BarEventKind(Enum):
    UPDATE = "update"
    CLOSE = "close"
    REVISION = "revision"
    GAP = "gap"


@strawberry.type(
    description="The feed missed from..to (a reconnect, a restart, or the part of the day "
    "before this server's first trade): "
    "bars in it may be missing. filled: the 1m bars wholly inside were fetched from "
    "history and inserted (bars of them); the bar of the minute holding `to` has only "
    "what arrived from then on."
)
class Gap:
    from_: Timestamp = strawberry.field(name="from")
    to: Timestamp
    filled: bool
    bars: int
    reason: str = strawberry.field(
        description='"start" (the day before this server\'s first trade of the symbol), '
        '"restart" or "reconnect".'
    )

    @classmethod
    def of(cls, item: GapRecord) -> Gap:
        return cls(
            from_=Timestamp(float(item.from_ms)),
            to=Timestamp(float(item.to_ms)),
            filled=item.filled,
            bars=item.bars,
            reason=item.reason,
        )


@strawberry.type(description="One OHLCV bar. final is false while its interval runs.")
class Bar:
    symbol: str
    timeframe: Timeframe
    start: Timestamp
    end: Timestamp
    open: float
    high: float
    low: float
    close: float
    volume: Long
    vwap: float = strawberry.field(
        description="Trade-weighted: the bar's notional over its volume (its close when "
        "no print of it counted for volume)."
    )
    trades: Long
    final: bool
    revision: int = strawberry.field(
        description="0, or how many times late trades changed this bar after it closed."
    )

    @classmethod
    def of(cls, b: BarRecord) -> Bar:
        return cls(
            symbol=b.symbol,
            timeframe=b.timeframe,
            start=Timestamp(float(b.start_ms)),
            end=Timestamp(float(b.end_ms)),
            open=b.open,
            high=b.high,
            low=b.low,
            close=b.close,
            volume=Long(b.volume),
            vwap=prices.average_price(b.vwap),
            trades=Long(b.trades),
            final=b.final,
            revision=b.revision,
        )


@strawberry.type
class BarEdge:
    cursor: str
    node: Bar


@strawberry.type(description="A page of bars, oldest first.")
class BarConnection:
    edges: list[BarEdge]
    page_info: PageInfo


@strawberry.type(description="A bar update, close or revision (bar set), or a GAP (gap set).")
class BarEvent:
    kind: BarEventKind
    bar: Bar | None
    snapshot: bool
    gap: Gap | None = None


@strawberry.input(description="An indicator and its parameters; omitted ones take defaults.")
class IndicatorInput:
    kind: IndicatorKind
    period: int | None = None
    fast: int | None = None
    slow: int | None = None
    signal: int | None = None
    std_dev: float | None = None
    k_period: int | None = None
    k_smooth: int | None = None
    d_period: int | None = None

    def spec(self) -> IndicatorSpec:
        params = {
            name: value
            for name, value in (
                ("period", self.period),
                ("fast", self.fast),
                ("slow", self.slow),
                ("signal", self.signal),
                ("std_dev", self.std_dev),
                ("k_period", self.k_period),
                ("k_smooth", self.k_smooth),
                ("d_period", self.d_period),
            )
            if value is not None
        }
        return IndicatorSpec.of(self.kind, **params)


@strawberry.type
class IndicatorOutput:
    name: str
    value: float | None


@strawberry.type(
    description="An indicator's value on the latest bar (the forming one while its interval runs)."
)
class IndicatorValue:
    symbol: str
    timeframe: Timeframe
    key: str = strawberry.field(description='Canonical name, e.g. "MACD(12,26,9)".')
    ready: bool = strawberry.field(
        description="False during warm-up (not enough bars for every output; an output "
        "that has its value already, such as ADX's plus_di before its adx, shows it)."
    )
    outputs: list[IndicatorOutput]
    bar_start: Timestamp | None
    final: bool = strawberry.field(description="True once the bar it was computed on closed.")
    cold_start: bool = strawberry.field(
        description="True if no history could be had, so early values lack warm-up."
    )

    @classmethod
    def of(cls, slot: IndicatorSlot, update: IndicatorUpdate | None) -> IndicatorValue:
        values = update.values if update else None
        names = slot.spec.outputs
        # Not-yet outputs are NaN inside; JSON has no NaN: they are null here.
        shown = [
            values[i] if values is not None and math.isfinite(values[i]) else None
            for i in range(len(names))
        ]
        return cls(
            symbol=slot.symbol,
            timeframe=slot.timeframe,
            key=slot.key,
            ready=values is not None and all(v is not None for v in shown),
            outputs=[IndicatorOutput(name=n, value=shown[i]) for i, n in enumerate(names)],
            bar_start=Timestamp(float(update.bar_start_ms)) if update else None,
            final=update.final if update else False,
            cold_start=slot.cold,
        )


def _range(
    info: Info, symbol: str, from_: Timestamp | None, to: Timestamp | None
) -> tuple[str, int, int]:
    sym = info.context.services.directory.resolve(symbol)
    lo = int(from_) if from_ is not None else OPEN_START
    hi = int(to) if to is not None else OPEN_END
    if lo >= hi:
        raise InvalidInput("from must be before to")
    return sym, lo, hi


async def _bars(  # noqa: PLR0917 - one page's coordinates
    info: Info,
    symbol: str,
    timeframe: Timeframe,
    lo: int,
    hi: int,
    count: int,
    *,
    newest: bool,
    forming: bool,
) -> list[BarRecord]:
    """The ``count`` bars starting in ``[lo, hi)`` nearest its start (or with ``newest``
    its end), oldest first: stored ones merged with the ones in memory (which win: they
    hold the latest revisions) and the forming bar."""
    services = info.context.services
    builder = _analytics(services).book.builder(symbol)
    memory = builder.recent(timeframe)
    bar = builder.forming(timeframe) if forming else None
    if bar is not None:
        memory.append(bar)
    by_start: dict[int, BarRecord] = {}
    if services.database is not None:
        stored = await stored_page(
            services.database.pool,
            symbol,
            timeframe,
            start_ms=lo,
            end_ms=hi,
            count=count,
            newest=newest,
        )
        by_start = {b.start_ms: b for b in stored}
    by_start.update({b.start_ms: b for b in memory if lo <= b.start_ms < hi})
    ordered = [by_start[s] for s in sorted(by_start)]
    return ordered[-count:] if newest else ordered[:count]


def _analytics(services: Services) -> Analytics:
    assert services.analytics is not None
    return services.analytics


def _specs(specs: list[IndicatorInput]) -> list[IndicatorSpec]:
    if not 1 <= len(specs) <= MAX_SPECS:
        raise LimitExceeded(f"between 1 and {MAX_SPECS} indicators per request", limit=MAX_SPECS)
    return list({s.key: s for s in (i.spec() for i in specs)}.values())


@strawberry.type
class BarsQuery:
    @strawberry.field(
        description="The newest `limit` bars starting in [from, to) (either bound may be "
        "omitted), oldest first; the forming bar too when `to` is omitted. Use "
        "barsConnection to page through a longer range."
    )
    async def bars(  # noqa: PLR0917 - GraphQL arguments
        self,
        info: Info,
        symbol: str,
        timeframe: Timeframe,
        from_: Annotated[Timestamp | None, strawberry.argument(name="from")] = None,
        to: Timestamp | None = None,
        limit: int = 500,
    ) -> list[Bar]:
        if not 1 <= limit <= MAX_BARS:
            raise InvalidInput(f"limit must be between 1 and {MAX_BARS}")
        sym, lo, hi = _range(info, symbol, from_, to)
        bars = await _bars(info, sym, timeframe, lo, hi, limit + 1, newest=True, forming=to is None)
        return [Bar.of(b) for b in bars[-limit:]]

    @strawberry.field(
        description="Bars starting in [from, to) oldest first, a page at a time: `first` "
        "bars after the `after` cursor (an endCursor of the previous page). Every stored "
        "bar can be reached: 1s (recent days), 1m and 1d as stored, 5m/15m/1h merged from "
        "1m, the bars in memory and, when `to` is omitted, the forming bar last."
    )
    async def bars_connection(  # noqa: PLR0917 - GraphQL arguments
        self,
        info: Info,
        symbol: str,
        timeframe: Timeframe,
        from_: Annotated[Timestamp | None, strawberry.argument(name="from")] = None,
        to: Timestamp | None = None,
        first: int = DEFAULT_PAGE,
        after: str | None = None,
    ) -> BarConnection:
        size = page_size(first, MAX_BARS)
        sym, lo, hi = _range(info, symbol, from_, to)
        if after is not None:
            lo = max(lo, decode_position("b", after, "barsConnection") + 1)
        bars = await _bars(info, sym, timeframe, lo, hi, size + 1, newest=False, forming=to is None)
        page = bars[:size]
        edges = [BarEdge(cursor=encode_position("b", b.start_ms), node=Bar.of(b)) for b in page]
        return BarConnection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=len(bars) > size,
                end_cursor=edges[-1].cursor if edges else after,
            ),
        )

    @strawberry.field(
        description="Windows this server's feed missed for the symbol (reconnects, "
        "restarts), oldest first, with whether history filled them."
    )
    def bar_gaps(self, info: Info, symbol: str) -> list[Gap]:
        services = info.context.services
        sym = services.directory.resolve(symbol)
        return [Gap.of(g) for g in _analytics(services).recovery.gaps(sym)]

    @strawberry.field(description="An indicator's current value (warmed up from history).")
    async def indicator(
        self,
        info: Info,
        symbol: str,
        timeframe: Timeframe,
        spec: IndicatorInput,
    ) -> IndicatorValue:
        services = info.context.services
        sym = services.directory.resolve(symbol)
        analytics = _analytics(services)
        slot = await analytics.acquire(sym, timeframe, spec.spec())
        try:
            return IndicatorValue.of(slot, slot.last)
        finally:
            analytics.release(slot)


@strawberry.type
class BarsSubscription:
    @strawberry.subscription(
        description="The forming bar first (snapshot: true), then its every update, each "
        "close, and revisions of closed bars changed by late trades."
    )
    async def bars(
        self,
        info: Info,
        symbol: str,
        timeframe: Timeframe,
    ) -> AsyncIterable[BarEvent]:
        services = info.context.services
        sym = services.directory.resolve(symbol, stream=True)
        lease = await admit_subscription(info, [sym])
        analytics = _analytics(services)
        hub = services.hub

        def attach(sink: Callable[[BarEventRecord | GapRecord], None]) -> Callable[[], None]:
            stop_watching = analytics.watch_bars(sym, timeframe)
            bars = hub.attach(bars_channel(timeframe), [sym], sink)
            gaps = hub.attach("G", [sym], sink)

            def detach() -> None:
                gaps.close()
                bars.close()
                stop_watching()

            return detach

        def forming() -> list[BarEventRecord]:
            bar = analytics.book.builder(sym).forming(timeframe)
            return [BarEventRecord(BarEventKindRecord.UPDATE, bar)] if bar is not None else []

        return Feed(
            attach=attach,
            render=_bar_event,
            snapshot=forming,
            key=_bar_event_key,
            symbols=(sym,),
            release=releaser(lease),
        )

    @strawberry.subscription(
        description="Indicator values on every bar update (provisional) and close (final); "
        "the current values first."
    )
    async def indicators(
        self,
        info: Info,
        symbol: str,
        timeframe: Timeframe,
        specs: list[IndicatorInput],
    ) -> AsyncIterable[IndicatorValue]:
        services = info.context.services
        sym = services.directory.resolve(symbol, stream=True)
        chosen = _specs(specs)
        lease = await admit_subscription(info, [sym])
        analytics = _analytics(services)
        slots: list[IndicatorSlot] = []

        def release_slots() -> None:
            for slot in slots:
                analytics.release(slot)

        try:
            for spec in chosen:
                slots.append(await analytics.acquire(sym, timeframe, spec))
        except BaseException:
            releaser(lease, release_slots)()
            raise
        by_key = {slot.key: slot for slot in slots}
        hub = services.hub

        def attach(sink: Callable[[IndicatorItem], None]) -> Callable[[], None]:
            def on_update(update: IndicatorUpdate) -> None:
                sink((by_key[update.key], update))

            attachments = [
                hub.attach(indicator_channel(timeframe, key), [sym], on_update) for key in by_key
            ]

            def detach() -> None:
                for attachment in attachments:
                    attachment.close()

            return detach

        return Feed(
            attach=attach,
            render=_indicator_value,
            snapshot=lambda: [(slot, slot.last) for slot in slots],
            # A bar's final value replaces its provisional ones, never the next bar's.
            key=lambda item: (item[0].key, item[1].bar_start_ms if item[1] else None),
            symbols=(sym,),
            release=releaser(lease, release_slots),
        )


IndicatorItem = tuple[IndicatorSlot, "IndicatorUpdate | None"]


def _indicator_value(item: IndicatorItem, _snapshot: bool, _dropped: int) -> IndicatorValue:
    return IndicatorValue.of(*item)


def _bar_event(item: BarEventRecord | GapRecord, snapshot: bool, _dropped: int) -> BarEvent:
    if isinstance(item, GapRecord):
        return BarEvent(kind=BarEventKind.GAP, bar=None, snapshot=False, gap=Gap.of(item))
    return BarEvent(kind=BarEventKind(item.kind.value), bar=Bar.of(item.bar), snapshot=snapshot)


def _bar_event_key(item: BarEventRecord | GapRecord) -> int:
    # Newest event per bar: a close replaces the bar's pending updates, never lost.
    # Gaps are keyed by their negative start so they never replace a bar.
    return -item.from_ms if isinstance(item, GapRecord) else item.bar.start_ms


__all__ = ["BarsQuery", "BarsSubscription", "IndicatorInput", "Timeframe"]
