"""Bars, indicators and alert evaluation, fed by the ingest on every event.

On the hot path (synchronous, never waits):

* every trade goes into the symbol's ``BarBuilder`` (all timeframes) and the alert
  engine; closed and revised bars are published (``B.<tf>.<symbol>``), 1m/1d bars are
  handed to the ``BarWriter`` (written off the hot path);
* the forming bar of each (symbol, timeframe) that someone watches is published, and
  fed to the indicators computed on it: ``add`` for a new interval, ``update`` for a
  tick in the same one, so a tick never re-appends; at a close the value is final.
  With a delivery flusher (``settle_with``), the forming bar goes to its subscribers
  and to the indicators only subscribers read once per flush, not on every trade: a
  provisional value the next trade replaces before anyone is sent it is never
  computed, so what subscribers select cannot slow the feed. Indicators alerts read
  still follow every trade; closes and revisions are always immediate and in order;
* a revised closed bar rolls its indicators back to before it and replays the bars
  since, so a late print corrects indicators instead of corrupting them;
* every quote goes to the alert engine; firings go to ``AlertDelivery`` (persisted,
  then published).

Indicators exist only while something needs them (a subscriber, an alert), one per
(symbol, timeframe, spec) shared by everyone, dropped with the last user. A new one is
warmed up from history (Polygon REST, stored bars, or simulated history) and then
from the bars already built in memory, so its first value is the right one.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import msgspec

from server.alerts import AlertEngine, Fired, IndicatorKey
from server.bar_recovery import BarRecovery
from server.delivery.bus import Bus
from server.delivery.firings import AlertDelivery, Firing
from server.errors import Unavailable
from server.history.provider import MAX_BARS, HistoryProvider
from server.indicators import Indicator, IndicatorSpec
from server.indicators.warmup import anchor_start, bars_needed
from server.limits.firing_rates import FiringRates
from server.market.bars import BarBook, BarEvent, BarEventKind, compare_with_aggregate
from server.market.timeframes import Bar, Timeframe
from server.storage.bars import STORED_TIMEFRAMES, BarWriter
from streams.conditions import LAST
from streams.events import Aggregate, MinuteAggregate, Quote, Received, Trade
from streams.screening import FeedClock

log = logging.getLogger(__name__)


# Topics end with the symbol, so the hub can count interest per symbol (and have the
# feed subscribe upstream to what subscribers of bars and indicators need).


def bars_channel(timeframe: Timeframe) -> str:
    return f"B.{timeframe.value}"


def indicator_channel(timeframe: Timeframe, key: str) -> str:
    return f"I.{timeframe.value}.{key}"


def bars_topic(timeframe: Timeframe, symbol: str) -> str:
    return f"{bars_channel(timeframe)}.{symbol}"


def indicator_topic(timeframe: Timeframe, symbol: str, key: str) -> str:
    return f"{indicator_channel(timeframe, key)}.{symbol}"


class IndicatorUpdate(msgspec.Struct, frozen=True, gc=False):
    """An indicator's value after a bar update; ``final`` once its bar closed."""

    symbol: str
    timeframe: Timeframe
    key: str
    outputs: tuple[str, ...]
    values: tuple[float, ...] | None
    bar_start_ms: int
    final: bool
    t_ms: int


@dataclass(eq=False)
class IndicatorSlot:
    symbol: str
    timeframe: Timeframe
    spec: IndicatorSpec
    indicator: Indicator
    refs: int = 0
    #: The start of every bar fed, newest last (bounded by the rollback depth).
    starts: deque[int] = field(default_factory=lambda: deque(maxlen=256))
    ready: asyncio.Future[None] | None = None
    warming: asyncio.Task[None] | None = None
    #: True when history could not be had: values are from a cold start.
    cold: bool = False
    last: IndicatorUpdate | None = None
    #: Armed alerts that read it: then it follows every trade, never a flush.
    alerts: int = 0

    @property
    def key(self) -> str:
        return self.spec.key

    @cached_property
    def topic(self) -> str:
        # Read on every update; symbol, timeframe and spec never change.
        return indicator_topic(self.timeframe, self.symbol, self.spec.key)


@dataclass
class _Watch:
    """What is attached to one (symbol, timeframe): bar subscribers and indicators."""

    bar_watchers: int = 0
    slots: list[IndicatorSlot] = field(default_factory=list)
    #: When a trade last changed the forming bar, until the next flush publishes it
    #: and feeds it to the indicators only subscribers read (``Analytics.prepare``).
    changed_at: int | None = None


class Analytics:
    def __init__(
        self,
        *,
        bus: Bus,
        history: HistoryProvider,
        writer: BarWriter | None,
        engine: AlertEngine,
        delivery: AlertDelivery | None,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        clock: FeedClock | None = None,
        rates: FiringRates | None = None,
    ) -> None:
        self._bus = bus
        #: The feed's clock. The ingest's screen owns it when given (it notes accepted
        #: events); otherwise this object notes the events it sees.
        self.clock = clock if clock is not None else FeedClock()
        self._own_clock = clock is None
        self._history = history
        self._writer = writer
        self.engine = engine
        self._delivery = delivery
        self._wall_ms = wall_ms
        self.book = BarBook()
        self._slots: dict[tuple[str, Timeframe, str], IndicatorSlot] = {}
        self._watch: dict[str, dict[Timeframe, _Watch]] = {}
        self._alert_slots: dict[IndicatorKey, IndicatorSlot] = {}
        self.fired = 0
        #: Per-alert and per-user firing rates (wall clock); None: unlimited.
        self.rates = rates
        self._evaluated: dict[str, int] = {}
        self._resume: dict[str, int] = {}
        self._on_resume: Callable[[str, int], None] | None = None
        #: Some event-time bookkeeping is waiting for events (``_note_time``).
        self._attend = self._own_clock
        #: Symbols whose bars this process has been building (or restored).
        self._traded: set[str] = set()
        self.aggregates_checked = 0
        self.aggregate_mismatches = 0
        #: What the feed missed (reconnects, restarts): backfilled or announced.
        self.recovery = BarRecovery(self.book, history, writer, bus.publish, self._on_bar_events)
        #: Asks for ``prepare`` to be called before subscribers' data is next written
        #: (the delivery flusher's ``prepare``); ``None``: every trade, as it comes.
        self._settle_later: Callable[[Analytics], None] | None = None
        self._unsettled: list[tuple[str, Timeframe, _Watch]] = []

    def settle_with(self, settle_later: Callable[[Analytics], None]) -> None:
        """Feed forming bars to subscriber-only indicators once per flush, which
        ``settle_later(self)`` asks for (it then calls ``prepare``)."""
        self._settle_later = settle_later

    # ------------------------------------------------------------ the hot path

    def on_event(self, item: Received) -> None:
        ev = item.event
        kind = type(ev)
        if kind is Trade:
            self._on_trade(ev, item)  # type: ignore[arg-type]
        elif kind is Quote:
            q: Quote = ev  # type: ignore[assignment]
            if self._attend:
                self._note_time(q.sym, q.t, item)
            self._evaluated[q.sym] = q.t
            self._deliver(self.engine.on_quote(q.sym, q.bp, q.ap, q.t))
        else:
            self._check_aggregate(ev)  # type: ignore[arg-type]

    def _check_aggregate(self, agg: Aggregate) -> None:
        """Polygon's own A/AM bars (when subscribed) against ours for the same window."""
        timeframe = Timeframe.M1 if type(agg) is MinuteAggregate else Timeframe.S1
        builder = self.book.get(agg.sym)
        if builder is None:
            return
        ours = next((b for b in builder.recent(timeframe) if b.start_ms == agg.s), None)
        if ours is None:
            return
        self.aggregates_checked += 1
        differences = compare_with_aggregate(ours, agg)
        if differences:
            self.aggregate_mismatches += 1
            if self.aggregate_mismatches == 1:
                log.warning(
                    "our %s bar differs from Polygon's %s: %s; further differences "
                    "are only counted",
                    timeframe.value,
                    agg.sym,
                    "; ".join(differences),
                )

    def new_session(self) -> None:
        """The upstream reconnected: whatever happened since our last event is missing."""
        self.recovery.new_session(self.clock.time_ms)
        self._attend = True

    def _note_time(self, symbol: str, t_ms: int, item: Received) -> None:
        """What only some events need: the clock when this object owns it, the first
        event after a gap (bars) or a restart (alerts). The hot path calls this only
        while ``_attend`` says one of them is waiting."""
        if self._own_clock:
            self.clock.note(t_ms, item.received_ns // 1_000_000)
        recovery = self.recovery
        if recovery.armed:
            recovery.on_event(symbol, t_ms)
        if self._resume:
            self._resumed(symbol, t_ms)
        self._attend = self._own_clock or recovery.armed or bool(self._resume)

    def restore_session(self, symbol: str, bars: list[Bar]) -> None:
        """Rebuild ``symbol``'s session from its stored bars (``BarRecovery.restore``)."""
        self.recovery.restore(symbol, bars)
        self._traded.add(symbol)  # its window starts where the stored bars end
        self._attend = True

    def _on_trade(self, trade: Trade, item: Received) -> None:
        symbol = trade.sym
        if self._attend:
            self._note_time(symbol, trade.t, item)
        if symbol not in self._traded:
            self._traded.add(symbol)
            self.recovery.first_trade(symbol, trade.t)
        flags = item.flags
        events = self.book.on_trade(symbol, trade.t, trade.p, trade.s, flags)
        if events:
            self._on_bar_events(events, trade.t)
        if flags & LAST:
            self._evaluated[symbol] = trade.t
            self._deliver(self.engine.on_trade(symbol, trade.p, trade.t))
        watched = self._watch.get(symbol)
        if not watched:
            return
        builder = self.book.builder(symbol)
        settle_later = self._settle_later
        for timeframe, watch in watched.items():
            if settle_later is None:
                bar = builder.forming(timeframe)
                if bar is not None:
                    self._on_forming(bar, watch, watch.slots, trade.t)
                continue
            if self._alert_slots:
                alerted = [slot for slot in watch.slots if slot.alerts]
                if alerted and (bar := builder.forming(timeframe)) is not None:
                    self._feed_slots(alerted, bar, trade.t, final=False)
            # The rest (bar subscribers, subscriber-only indicators) at the flush.
            if watch.changed_at is None:
                if not self._unsettled:
                    settle_later(self)
                self._unsettled.append((symbol, timeframe, watch))
            watch.changed_at = trade.t

    def _on_forming(
        self, bar: Bar, watch: _Watch, slots: Sequence[IndicatorSlot], t_ms: int
    ) -> None:
        if watch.bar_watchers:
            self._bus.publish(
                bars_topic(bar.timeframe, bar.symbol), BarEvent(BarEventKind.UPDATE, bar)
            )
        if slots:
            self._feed_slots(slots, bar, t_ms, final=False)

    def prepare(self) -> None:
        """At the flush: the forming bar of each watch trades changed since the last
        flush, once, to its subscribers and to the indicators only subscribers read
        (their values go out in the same flush). Whatever closed meanwhile was
        delivered as it closed; the forming bar is taken now, so it is the newest."""
        unsettled, self._unsettled = self._unsettled, []
        for symbol, timeframe, watch in unsettled:
            t_ms, watch.changed_at = watch.changed_at, None
            bar = self.book.builder(symbol).forming(timeframe)
            if bar is None or t_ms is None:
                continue  # closed by the clock since, with no trade after
            slots = [slot for slot in watch.slots if not slot.alerts]
            self._on_forming(bar, watch, slots, t_ms)

    def _feed_slots(
        self, slots: Iterable[IndicatorSlot], bar: Bar, t_ms: int, *, final: bool
    ) -> None:
        values: dict[str, tuple[float, ...] | None] = {}
        for slot in slots:
            starts = slot.starts
            if starts and starts[-1] == bar.start_ms:
                slot.indicator.update(bar)
            elif not starts or bar.start_ms > starts[-1]:
                slot.indicator.add(bar)
                starts.append(bar.start_ms)
            else:
                continue  # an older bar: revisions take the rollback path
            update = IndicatorUpdate(
                bar.symbol,
                bar.timeframe,
                slot.key,
                slot.spec.outputs,
                slot.indicator.value,
                bar.start_ms,
                final,
                t_ms,
            )
            slot.last = update
            values[slot.key] = update.values
            self._bus.publish(slot.topic, update)
        if values:
            self._deliver(
                self.engine.on_indicators(
                    bar.symbol, bar.timeframe, values, t_ms, bar.start_ms, final
                )
            )

    def _on_bar_events(self, events: list[BarEvent], t_ms: int) -> None:
        for event in events:
            bar = event.bar
            if self._writer is not None and bar.timeframe in STORED_TIMEFRAMES:
                self._writer.submit(bar)
            watch = self._watch.get(bar.symbol, {}).get(bar.timeframe)
            if watch is not None and watch.bar_watchers:
                self._bus.publish(bars_topic(bar.timeframe, bar.symbol), event)
            if event.kind is BarEventKind.CLOSE:
                # A close happens at the bar's end, whatever made us notice it (the next
                # trade, or the clock while the symbol was quiet): that is the time its
                # final values and its oncePerBarClose firings carry.
                if watch is not None and watch.slots:
                    self._feed_slots(watch.slots, bar, bar.end_ms, final=True)
                self._deliver(
                    self.engine.on_bar_close(bar.symbol, bar.timeframe, bar.start_ms, bar.end_ms)
                )
            elif event.kind is BarEventKind.REVISION and watch is not None:
                for slot in watch.slots:
                    self._rollback(slot, bar, t_ms)

    def _rollback(self, slot: IndicatorSlot, revised: Bar, t_ms: int) -> None:
        """Undo the inputs from the revised bar on and feed the bars again."""
        starts = slot.starts
        depth = sum(1 for s in starts if s >= revised.start_ms)
        builder = self.book.builder(slot.symbol)
        if not depth:
            # A late print made a bar where the slot has none yet (an interval that had
            # no trade) after everything the slot saw: that happens when the forming
            # bar after it has not been fed yet (subscribers' values settle once per
            # flush). The bar is added, with the closed bars after it; the forming bar
            # and its update follow at the flush, as they would have without the print.
            for bar in builder.recent(slot.timeframe):
                if bar.start_ms >= revised.start_ms and (not starts or bar.start_ms > starts[-1]):
                    slot.indicator.add(bar)
                    starts.append(bar.start_ms)
            return
        if depth > slot.indicator.max_rollback or depth > slot.indicator.count:
            return  # older than what we can undo: the bar store still gets the revision
        for _ in range(depth):
            slot.indicator.remove()
            starts.pop()
        replay = [b for b in builder.recent(slot.timeframe) if b.start_ms >= revised.start_ms]
        forming = builder.forming(slot.timeframe)
        if forming is not None:
            replay.append(forming)
        for bar in replay:
            slot.indicator.add(bar)
            starts.append(bar.start_ms)
        if replay:
            last = replay[-1]
            slot.last = IndicatorUpdate(
                slot.symbol,
                slot.timeframe,
                slot.key,
                slot.spec.outputs,
                slot.indicator.value,
                last.start_ms,
                last.final,
                t_ms,
            )
            self._bus.publish(slot.topic, slot.last)

    def on_clock(self) -> None:
        """Close bars whose interval ended on the feed's clock (quiet symbols). The clock
        is robust (``FeedClock``: no single event moves it), extrapolated by wall time
        while the feed is quiet."""
        feed_now = self.clock.now_ms(self._wall_ms())
        if not feed_now:
            return
        events = self.book.on_clock(feed_now)
        if events:
            self._on_bar_events(events, feed_now)

    def _deliver(self, fired: list[Fired]) -> None:
        if not fired:
            return
        self.fired += len(fired)
        if self._delivery is None:
            return
        rates = self.rates
        now_us = self._wall_ms() * 1000 if rates is not None else 0
        for f in fired:
            suppressed = 0
            if rates is not None:
                admitted = rates.admit(f.alert_id, f.owner, now_us, ends_alert=f.done)
                if admitted is None:
                    continue
                suppressed = admitted
            self._delivery.submit(firing_of(f, suppressed))

    def expect_resume(
        self, watermarks: dict[str, int], on_resume: Callable[[str, int], None]
    ) -> None:
        """After a restart: call ``on_resume(symbol, t)`` at the first event evaluated for
        each of these symbols (whose alerts were last durably evaluated at the given
        times), so the window in between can be recovered."""
        self._resume.update(watermarks)
        self._on_resume = on_resume
        self._attend = True

    def _resumed(self, symbol: str, t_ms: int) -> None:
        if symbol in self._resume:
            del self._resume[symbol]
            if self._on_resume is not None:
                self._on_resume(symbol, t_ms)

    def take_evaluated(self) -> dict[str, int]:
        """The exchange time of the last event each symbol's alerts were evaluated on,
        for the symbols evaluated since the previous call (the delivery's watermark)."""
        taken, self._evaluated = self._evaluated, {}
        return taken

    # ------------------------------------------------------- who needs what

    def watch_bars(self, symbol: str, timeframe: Timeframe) -> Callable[[], None]:
        """Publish forming-bar updates of (symbol, timeframe) until the returned call."""
        watch = self._watch.setdefault(symbol, {}).setdefault(timeframe, _Watch())
        watch.bar_watchers += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                watch.bar_watchers -= 1
                self._prune(symbol, timeframe)

        return release

    def _prune(self, symbol: str, timeframe: Timeframe) -> None:
        by_tf = self._watch.get(symbol)
        watch = by_tf.get(timeframe) if by_tf else None
        if watch is not None and not watch.bar_watchers and not watch.slots:
            del by_tf[timeframe]  # type: ignore[union-attr]
            if not by_tf:
                del self._watch[symbol]

    async def acquire(
        self, symbol: str, timeframe: Timeframe, spec: IndicatorSpec
    ) -> IndicatorSlot:
        """The shared indicator for (symbol, timeframe, spec), warmed up. Pair with
        ``release``."""
        k = (symbol, timeframe, spec.key)
        slot = self._slots.get(k)
        if slot is None:
            slot = IndicatorSlot(symbol, timeframe, spec, spec.create(timeframe=timeframe))
            slot.ready = asyncio.get_running_loop().create_future()
            self._slots[k] = slot
            slot.warming = asyncio.create_task(
                self._warm(slot), name=f"warm {spec.key} {symbol} {timeframe}"
            )
        slot.refs += 1
        assert slot.ready is not None
        try:
            await asyncio.shield(slot.ready)
        except BaseException:
            self.release(slot)
            raise
        return slot

    def release(self, slot: IndicatorSlot) -> None:
        slot.refs -= 1
        if slot.refs > 0:
            return
        self._slots.pop((slot.symbol, slot.timeframe, slot.key), None)
        watch = self._watch.get(slot.symbol, {}).get(slot.timeframe)
        if watch is not None and slot in watch.slots:
            watch.slots.remove(slot)
            self._prune(slot.symbol, slot.timeframe)

    async def _warm(self, slot: IndicatorSlot) -> None:
        """Feed a new indicator the history that makes its value the one a server
        running all along would have (``server.indicators.warmup``): the session (or
        year) so far for anchored ones, enough bars to forget the seed for recursive
        ones, the window for the rest; then the bars in memory and the forming bar."""
        assert slot.ready is not None
        builder = self.book.builder(slot.symbol)
        in_memory = builder.recent(slot.timeframe)
        forming = builder.forming(slot.timeframe)
        latest = (
            forming.start_ms
            if forming
            else in_memory[-1].start_ms
            if in_memory
            else self.clock.time_ms or self._wall_ms()
        )
        first = in_memory[0].start_ms if in_memory else forming.start_ms if forming else latest
        anchor = anchor_start(slot.spec, slot.timeframe, latest)
        history: list[Bar] = []
        try:
            if anchor is not None:
                if anchor < first:
                    history = await self._history_range(slot, anchor, first)
            else:
                want = bars_needed(slot.spec) or 0
                if len(in_memory) < want:
                    history = await self._history.bars(
                        slot.symbol, slot.timeframe, end_ms=first, count=want - len(in_memory)
                    )
        except Unavailable as exc:
            slot.cold = True
            log.warning(
                "no history for %s %s %s: %s", slot.key, slot.symbol, slot.timeframe.value, exc
            )
        except Exception:
            slot.cold = True
            log.exception("history failed for %s %s", slot.symbol, slot.timeframe.value)
        # From here on nothing awaits: the bars in memory cannot change under us.
        in_memory = builder.recent(slot.timeframe)
        forming = builder.forming(slot.timeframe)
        first_live = in_memory[0].start_ms if in_memory else forming.start_ms if forming else None
        bars = [b for b in history if first_live is None or b.start_ms < first_live]
        bars.extend(in_memory)
        if forming is not None:
            bars.append(forming)
        if anchor is not None:
            bars = [b for b in bars if b.start_ms >= anchor]  # it starts afresh there
        for bar in bars:
            slot.indicator.add(bar)
            slot.starts.append(bar.start_ms)
        if bars:
            last = bars[-1]
            slot.last = IndicatorUpdate(
                slot.symbol,
                slot.timeframe,
                slot.key,
                slot.spec.outputs,
                slot.indicator.value,
                last.start_ms,
                last.final,
                self.clock.time_ms,
            )
        if slot.refs > 0:
            self._watch.setdefault(slot.symbol, {}).setdefault(
                slot.timeframe, _Watch()
            ).slots.append(slot)
        if not slot.ready.done():
            slot.ready.set_result(None)

    async def _history_range(self, slot: IndicatorSlot, start_ms: int, end_ms: int) -> list[Bar]:
        """Every closed bar of the slot's timeframe in ``[start_ms, end_ms)``, fetched in
        pieces a provider accepts (a session of 1s bars is more than one request)."""
        size = slot.timeframe.millis or 86_400_000
        step = size * (MAX_BARS - 1)
        out: list[Bar] = []
        lo = start_ms
        while lo < end_ms:
            hi = min(end_ms, lo + step)
            out.extend(await self._history.range(slot.symbol, slot.timeframe, lo, hi))
            lo = hi
        return out

    async def sync_alert_indicators(self) -> None:
        """Compute exactly the indicators armed alerts read (after alerts change)."""
        added, removed = self.engine.take_requirement_changes()
        for key in removed:
            slot = self._alert_slots.pop(key, None)
            if slot is not None:
                slot.alerts -= 1
                self.release(slot)
        for key in added:
            spec = IndicatorSpec.parse(key.key)
            slot = await self.acquire(key.symbol, key.timeframe, spec)
            self._alert_slots[key] = slot
            slot.alerts += 1
            if slot.last is not None:
                # Give the engine the current value at once, not at the next tick.
                self._deliver(
                    self.engine.on_indicator(
                        key.symbol,
                        key.timeframe,
                        key.key,
                        slot.last.values,
                        slot.last.t_ms,
                        slot.last.bar_start_ms,
                        slot.last.final,
                    )
                )

    async def run_clock(self, interval_s: float = 0.25) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                self.on_clock()
            except Exception:
                log.exception("bar clock failed")


def firing_of(fired: Fired, suppressed: int = 0) -> Firing:
    payload = fired.payload()
    if suppressed:
        payload["suppressedBefore"] = suppressed
    return Firing(
        alert_id=uuid.UUID(fired.alert_id),
        owner=fired.owner,
        symbol=fired.symbol,
        dedup_key=fired.key,
        fired_at_ms=fired.t_ms,
        payload=payload,
        done=fired.done,
        suppressed=suppressed,
    )
