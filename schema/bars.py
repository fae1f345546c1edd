"""Bars and technical indicators: history, current values, live streams."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from enum import Enum
from typing import Annotated

import strawberry

from schema.access_gate import admit_subscription, leased
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
from server.bars import BarEvent as BarEventRecord
from server.bars import BarEventKind as BarEventKindRecord
from server.errors import InvalidInput, LimitExceeded
from server.history_stored import StoredHistory
from server.indicators import IndicatorKind, IndicatorSpec
from server.mailbox import ConflatingMailbox
from server.services import Services
from server.subscriptions import next_batch
from server.timeframes import Bar as BarRecord
from server.timeframes import Timeframe

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
    ) -> AsyncGenerator[BarEvent, None]:
        services = info.context.services
        sym = services.directory.resolve(symbol)
        lease = await admit_subscription(info, [sym], public=True)
        return leased(_bar_events(services, sym, timeframe), lease)

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
    ) -> AsyncGenerator[IndicatorValue, None]:
        services = info.context.services
        sym = services.directory.resolve(symbol)
        chosen = _specs(specs)
        lease = await admit_subscription(info, [sym], public=True)
        return leased(_indicator_values(services, sym, timeframe, chosen), lease)


async def _bar_events(
    services: Services, symbol: str, timeframe: Timeframe
) -> AsyncGenerator[BarEvent, None]:
    analytics = _analytics(services)
    wake = asyncio.Event()
    # Newest event per bar: a close replaces the bar's pending updates, never lost.
    # Gaps are keyed by their negative start so they never replace a bar.
    box: ConflatingMailbox[int, tuple[BarEventRecord | GapRecord, bool]] = ConflatingMailbox(
        wake.set
    )
    release = analytics.watch_bars(symbol, timeframe)
    attachment = services.hub.attach(
        bars_channel(timeframe), [symbol], lambda e: box.put(e.bar.start_ms, (e, False))
    )
    gaps = services.hub.attach("G", [symbol], lambda g: box.put(-g.from_ms, (g, False)))
    services.streams.add(box)
    try:
        forming = analytics.book.builder(symbol).forming(timeframe)
        if forming is not None:
            box.put_if_absent(
                forming.start_ms, (BarEventRecord(BarEventKindRecord.UPDATE, forming), True)
            )
        while True:
            for event, snapshot in await next_batch(box.drain, wake):
                if isinstance(event, GapRecord):
                    gap = Gap(
                        from_=Timestamp(float(event.from_ms)),
                        to=Timestamp(float(event.to_ms)),
                        filled=event.filled,
                        bars=event.bars,
                    )
                    yield BarEvent(kind=BarEventKind.GAP, bar=None, snapshot=False, gap=gap)
                    continue
                yield BarEvent(
                    kind=BarEventKind(event.kind.value), bar=Bar.of(event.bar), snapshot=snapshot
                )
    finally:
        gaps.close()
        attachment.close()
        release()
        services.streams.remove(box)


async def _indicator_values(
    services: Services, symbol: str, timeframe: Timeframe, specs: list[IndicatorSpec]
) -> AsyncGenerator[IndicatorValue, None]:
    analytics = _analytics(services)
    slots: list[IndicatorSlot] = []
    wake = asyncio.Event()
    # Newest value per (indicator, bar): a bar's final value replaces its provisional
    # ones but is never replaced by the next bar's.
    box: ConflatingMailbox[tuple[str, int], IndicatorUpdate] = ConflatingMailbox(wake.set)
    attachments = []
    try:
        for spec in specs:
            slots.append(await analytics.acquire(symbol, timeframe, spec))
        by_key = {s.key: s for s in slots}
        for slot in slots:
            attachments.append(
                services.hub.attach(
                    indicator_channel(timeframe, slot.key),
                    [symbol],
                    lambda u: box.put((u.key, u.bar_start_ms), u),
                )
            )
        services.streams.add(box)
        for slot in slots:
            yield IndicatorValue.of(slot, slot.last)
        while True:
            for update in await next_batch(box.drain, wake):
                yield IndicatorValue.of(by_key[update.key], update)
    finally:
        for attachment in attachments:
            attachment.close()
        for slot in slots:
            analytics.release(slot)
        services.streams.remove(box)


__all__ = ["BarsQuery", "BarsSubscription", "IndicatorInput", "Timeframe"]
