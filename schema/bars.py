"""Bars and technical indicators: history, current values, live streams."""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable
from enum import Enum
from typing import Annotated

import strawberry

from schema.access_gate import admit_subscription, releaser
from schema.context import Info
from schema.scalars import Long, Timestamp
from server.analytics import (
    Analytics,
    IndicatorSlot,
    IndicatorUpdate,
    bars_channel,
    indicator_channel,
)
from server.analytics import Gap as GapRecord
from server.delivery.multiplex import Feed
from server.errors import InvalidInput, LimitExceeded
from server.history.stored import StoredHistory
from server.indicators import IndicatorKind, IndicatorSpec
from server.market.bars import BarEvent as BarEventRecord
from server.market.bars import BarEventKind as BarEventKindRecord
from server.market.timeframes import Bar as BarRecord
from server.market.timeframes import Timeframe
from server.services.container import Services

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
    description="SMA, EMA, WMA, RSI (Wilder), MACD, BBANDS (Bollinger), ATR, STOCH, VWAP "
    "(session-anchored, New York day), OBV, ADX, DONCHIAN.",
)


@strawberry.enum
class BarEventKind(Enum):
    UPDATE = "update"
    CLOSE = "close"
    REVISION = "revision"
    GAP = "gap"


@strawberry.type(
    description="The feed was down: bars between from and to may be missing. "
    "filled: the missing 1m bars were fetched from history and stored."
)
class Gap:
    from_: Timestamp = strawberry.field(name="from")
    to: Timestamp
    filled: bool
    bars: int


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
    vwap: float
    trades: int
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
            vwap=b.vwap,
            trades=b.trades,
            final=b.final,
            revision=b.revision,
        )


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
    ready: bool = strawberry.field(description="False during warm-up (not enough bars).")
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
        return cls(
            symbol=slot.symbol,
            timeframe=slot.timeframe,
            key=slot.key,
            ready=values is not None,
            outputs=[
                IndicatorOutput(name=n, value=values[i] if values else None)
                for i, n in enumerate(names)
            ],
            bar_start=Timestamp(float(update.bar_start_ms)) if update else None,
            final=update.final if update else False,
            cold_start=slot.cold,
        )


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
        description="Bars oldest first: those in [from, to) when given, else the most "
        "recent `limit`. Includes the forming bar when `to` is omitted."
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
        services = info.context.services
        sym = services.directory.resolve(symbol)
        tf = timeframe
        if not 1 <= limit <= MAX_BARS:
            raise InvalidInput(f"limit must be between 1 and {MAX_BARS}")
        start = int(from_) if from_ is not None else None
        end = int(to) if to is not None else None
        if start is not None and end is not None and start >= end:
            raise InvalidInput("from must be before to")
        builder = _analytics(services).book.builder(sym)
        memory = builder.recent(tf)
        forming = builder.forming(tf)
        if forming is not None and end is None:
            memory.append(forming)
        by_start = {}
        if services.database is not None and tf is not Timeframe.S1:
            stored = StoredHistory(services.database.pool)
            if start is not None:
                older = await stored.range(sym, tf, start, end if end is not None else 2**62)
            else:
                first = memory[0].start_ms if memory else end or 2**62
                older = await stored.bars(sym, tf, end_ms=first, count=limit)
            by_start = {b.start_ms: b for b in older}
        by_start.update({b.start_ms: b for b in memory})
        chosen = [
            b
            for s, b in sorted(by_start.items())
            if (start is None or s >= start) and (end is None or s < end)
        ]
        return [Bar.of(b) for b in chosen[-limit:]]

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
        sym = services.directory.resolve(symbol)
        lease = await admit_subscription(info, [sym], public=True)
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
        sym = services.directory.resolve(symbol)
        chosen = _specs(specs)
        lease = await admit_subscription(info, [sym], public=True)
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
        gap = Gap(
            from_=Timestamp(float(item.from_ms)),
            to=Timestamp(float(item.to_ms)),
            filled=item.filled,
            bars=item.bars,
        )
        return BarEvent(kind=BarEventKind.GAP, bar=None, snapshot=False, gap=gap)
    return BarEvent(kind=BarEventKind(item.kind.value), bar=Bar.of(item.bar), snapshot=snapshot)


def _bar_event_key(item: BarEventRecord | GapRecord) -> int:
    # Newest event per bar: a close replaces the bar's pending updates, never lost.
    # Gaps are keyed by their negative start so they never replace a bar.
    return -item.from_ms if isinstance(item, GapRecord) else item.bar.start_ms


__all__ = ["BarsQuery", "BarsSubscription", "IndicatorInput", "Timeframe"]
