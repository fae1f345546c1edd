"""Incremental OHLCV bars built from trades, per symbol, for several timeframes at once.

Pure and synchronous. The ingest feeds every trade of a symbol to its ``BarBuilder``
and a timer calls ``on_clock`` so that quiet symbols' bars close too; both return the
``BarEvent``s that happened.

When a bucket is final (closed)
    A bucket of a timeframe becomes final as soon as either

    - a trade of a *later* bucket of that timeframe arrives (immediately: the feed's own
      clock has moved past the interval, and waiting would delay every bar), or
    - ``on_clock(now_ms)`` runs with ``now_ms >= bucket end + close_delay_ms``. The grace
      exists because the clock and the feed disagree: a print stamped 09:30:59.990 may
      reach us at 09:31:00.050. ``now_ms`` must be on the feed's time axis (wall time for
      a live feed, the replay clock for a replay).

    Empty buckets become final the same way; they simply have no bar (like Polygon).

Open and close
    The open is the print with the earliest time, the close the one with the latest;
    prints of the same millisecond count in arrival order. A reordered or late print
    therefore lands where its time puts it, in forming and in revised bars alike.

Late trades
    A trade whose bucket is already final is late. If that bucket starts no earlier than
    the oldest of the last ``revision_window`` closed bars of the timeframe, the trade is
    applied: the bar is updated and re-emitted as ``REVISION`` with ``revision`` + 1. A
    bucket that had no bar (a gap) gets a new bar, also emitted as ``REVISION``, with
    ``revision`` 1: the "no bar" that was final has been revised. So ``CLOSE`` events
    carry revision 0 and come in time order, while ``REVISION`` events carry revision
    >= 1 and may name a bar the consumer has never seen: consumers look bars up by
    ``start_ms`` and insert when absent. A late trade outside the window is dropped and
    counted per timeframe (``late_dropped``). The window is per timeframe, so one print
    can be too late for its 1s bar and still count in the forming 1m bar.

Cost
    Buckets nest (1s in 1m in 5m in 15m in 1h in New York days, which start on UTC hour
    boundaries), so a trade touches only the forming bar of the finest timeframe; each
    coarser timeframe keeps an accumulator of its interval's content *outside* that bar
    and absorbs the finest bar when it closes. A trade thus costs one bar update however
    many timeframes are built, and allocates nothing but the returned (usually empty)
    list. ``Bar`` snapshots are made only for returned events and for ``forming()``;
    ``UPDATE`` events are opt-in (``emit_updates``), since most consumers want closes
    and can read ``forming()`` when they need the live bar.

Which prints count for what
    Every trade comes with its consolidated-tape update flags (``streams.conditions``):
    only prints that may set high/low set the high and the low, only prints that may set
    the last price set the open and the close, only prints that count for volume add to
    the volume and the VWAP's notional. A bucket holding no print that may set high/low
    has no bar (its volume still counts in the coarser bars around it). A bar whose
    prints set high/low but none the last price (e.g. only derivatively priced prints)
    takes its open and close from those prints, so every bar is well formed. A bar with
    no volume-counting print has volume 0 and its VWAP is its close. Prints with no
    flags, non-positive sizes or prices are ignored (counted in ``ignored``).

Restart and backfill
    ``restore`` rebuilds a fresh builder from the closed bars stored for a session (1s
    and 1m): closed history, and the open intervals of the coarser timeframes with what
    they held. ``insert_bar`` adds a closed bar fetched from history for a bucket the
    feed missed: it is recorded in its timeframe and its content is added to the coarser
    buckets holding it (forming ones silently, final ones as a ``REVISION``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from enum import StrEnum
from itertools import islice
from typing import TypeAlias

import msgspec

from server.market.timeframes import ALL_TIMEFRAMES, Bar, Timeframe
from server.market.trading_day import day_window
from streams.conditions import ALL, HIGH_LOW, LAST, VOLUME
from streams.events import Aggregate, MinuteAggregate

#: Closed bars per timeframe that a late trade may still revise.
DEFAULT_REVISION_WINDOW = 10
#: Closed bars kept in memory per timeframe for ``recent``.
DEFAULT_HISTORY = 1_000
#: Grace after a bucket's end before ``on_clock`` closes it (trade-driven closes have none).
DEFAULT_CLOSE_DELAY_MS = 500

#: "No open interval": ``start <= t < end`` is false for every t.
_NONE = 0
_NEVER = 2**62
#: Backfilled bars remembered per symbol (a gap is hours of minutes at most).
_INSERTED_MAX = 100_000
_INF = float("inf")


class BarEventKind(StrEnum):
    UPDATE = "update"  # the forming bar changed (only with ``emit_updates``)
    CLOSE = "close"  # a bar became final
    REVISION = "revision"  # a late trade changed (or created) a final bar


class BarEvent(msgspec.Struct, frozen=True, gc=False):
    kind: BarEventKind
    bar: Bar


#: A final bar that a late trade may still change, with what a revision needs besides the
#: bar: the exact notional (for VWAP), the times of its first and last prints (for the
#: open and close) and the rank of its open/close (see ``_Content``). A plain tuple: one
#: is built per closed bar.
_Closed: TypeAlias = tuple[Bar, float, int, int, int]


def _revised(closed: _Closed, part: _Content) -> _Closed:
    """``closed`` with the prints of ``part`` added (``part.rank`` must be > 0 or its
    volume is all it adds)."""
    bar, notional, first_t, last_t, rank = closed
    o, h, lo, c = bar.open, bar.high, bar.low, bar.close
    pr = part.rank
    if pr:
        h = max(h, part.high)
        lo = min(lo, part.low)
        if pr > rank:
            o, c, first_t, last_t, rank = part.open, part.close, part.first_t, part.last_t, pr
        elif pr == rank:
            if part.first_t < first_t:
                first_t, o = part.first_t, part.open
            if part.last_t >= last_t:
                last_t, c = part.last_t, part.close
    volume = bar.volume + part.volume
    notional += part.notional
    revised = msgspec.structs.replace(
        bar,
        open=o,
        high=h,
        low=lo,
        close=c,
        volume=volume,
        vwap=notional / volume if volume else c,
        trades=bar.trades + part.trades,
        revision=bar.revision + 1,
    )
    return revised, notional, first_t, last_t, rank


class _Content:
    """OHLCV of a set of prints, plus the times of the first and last (for open/close).

    ``rank`` says where the open and close come from: 0, no print that may set high/low
    (the other price fields mean nothing); 1, only high/low prints (their open and
    close stand in); 2, prints that may set the last price. Prints of a lower rank
    never move the open or close of a higher one. ``trades`` counts every print.
    """

    __slots__ = (
        "close",
        "first_t",
        "high",
        "last_t",
        "low",
        "notional",
        "open",
        "rank",
        "trades",
        "volume",
    )

    def __init__(self) -> None:
        self.open = self.high = self.low = self.close = 0.0
        self.volume = 0
        self.notional = 0.0
        self.trades = 0  # 0: empty, the other fields mean nothing
        self.rank = 0
        self.first_t = self.last_t = 0

    def add(self, t_ms: int, price: float, size: int, flags: int = ALL) -> None:
        self.trades += 1
        if flags & VOLUME:
            self.volume += size
            self.notional += price * size
        if not flags & HIGH_LOW:
            return
        r = 2 if flags & LAST else 1
        rank = self.rank
        if r > rank:
            if rank:
                if price > self.high:  # noqa: PLR1730 - an if is twice as fast as max()
                    self.high = price
                if price < self.low:  # noqa: PLR1730
                    self.low = price
            else:
                self.high = self.low = price
            self.open = self.close = price
            self.first_t = self.last_t = t_ms
            self.rank = r
            return
        if price > self.high:
            self.high = price
        elif price < self.low:
            self.low = price
        if r < rank:
            return
        if t_ms >= self.last_t:
            self.last_t = t_ms
            self.close = price
        elif t_ms < self.first_t:
            self.first_t = t_ms
            self.open = price

    def absorb(self, part: _Content) -> None:
        """Add the prints of ``part``; on equal times ``part`` counts as arriving later."""
        if part.trades == 0:
            return
        self.trades += part.trades
        self.volume += part.volume
        self.notional += part.notional
        pr = part.rank
        if not pr:
            return
        rank = self.rank
        if not rank:
            self.open, self.high, self.low, self.close = part.open, part.high, part.low, part.close
            self.first_t, self.last_t, self.rank = part.first_t, part.last_t, pr
            return
        if part.high > self.high:  # noqa: PLR1730 - an if is twice as fast as max()
            self.high = part.high
        if part.low < self.low:  # noqa: PLR1730
            self.low = part.low
        if pr > rank:
            self.open, self.close = part.open, part.close
            self.first_t, self.last_t, self.rank = part.first_t, part.last_t, pr
        elif pr == rank:
            if part.first_t < self.first_t:
                self.first_t, self.open = part.first_t, part.open
            if part.last_t >= self.last_t:
                self.last_t, self.close = part.last_t, part.close

    @classmethod
    def of_bar(cls, bar: Bar) -> _Content:
        """A closed bar as content: its prints span its interval, open and close at its
        edges (so it orders correctly against other bars' content)."""
        c = cls()
        c.open, c.high, c.low, c.close = bar.open, bar.high, bar.low, bar.close
        c.volume, c.notional, c.trades = bar.volume, bar.vwap * bar.volume, bar.trades
        c.first_t, c.last_t, c.rank = bar.start_ms, bar.end_ms - 1, 2
        return c


class _Series(_Content):
    """One timeframe of one symbol: its open interval and its closed bars.

    The inherited content is what the open interval holds *besides* the open interval of
    the next finer timeframe, which it absorbs when that one closes. For the finest
    timeframe that is the whole forming bar.
    """

    __slots__ = (
        "closed",
        "end",
        "history",
        "late_dropped",
        "sealed",
        "size",
        "start",
        "symbol",
        "tf",
    )

    def __init__(self, symbol: str, tf: Timeframe, revision_window: int, history: int) -> None:
        super().__init__()
        self.symbol = symbol
        self.tf = tf
        self.size = tf.millis or 0  # 0: New York calendar days
        self.start = self.end = _NONE
        #: Buckets ending at or before this are final (the trade-driven part; the clock's
        #: part is kept once per builder).
        self.sealed = 0
        #: The last ``revision_window`` closed bars (gap bars included), oldest first:
        #: what a late trade may still change.
        self.closed: deque[_Closed] = deque(maxlen=revision_window)
        self.history: deque[Bar] = deque(maxlen=history)
        self.late_dropped = 0

    def bucket(self, t_ms: int) -> tuple[int, int]:
        size = self.size
        if size:
            start = t_ms - t_ms % size
            return start, start + size
        window = day_window(t_ms)
        return window.start_ms, window.end_ms

    def open_interval(self, start: int, end: int) -> None:
        self.start = start
        self.end = end
        self.trades = self.volume = self.rank = 0
        self.notional = 0.0
        self.sealed = max(self.sealed, start)  # every earlier bucket is over

    def close_interval(self) -> Bar | None:
        """End the open interval; its final bar, or ``None`` if no print in it may set
        high/low (then its volume lives on only in the coarser bars)."""
        start, end = self.start, self.end
        self.start = self.end = _NONE
        if self.rank == 0:
            return None
        bar = self.bar_of(self, True, start, end)
        self.closed.append((bar, self.notional, self.first_t, self.last_t, self.rank))
        self.history.append(bar)
        return bar

    def bar_of(
        self, content: _Content, final: bool, start: int | None = None, end: int | None = None
    ) -> Bar:
        """``content`` as this interval's bar (``content.rank`` must be > 0)."""
        volume = content.volume
        return Bar(
            self.symbol,
            self.tf,
            self.start if start is None else start,
            self.end if end is None else end,
            content.open,
            content.high,
            content.low,
            content.close,
            volume,
            content.notional / volume if volume else content.close,
            content.trades,
            final,
            0,
        )

    def revise(self, start: int, end: int, part: _Content) -> Bar | None:
        """Add ``part`` (late prints, or a backfilled bar) to the final bucket
        ``[start, end)``; the revised bar, or ``None`` if that bucket is out of the
        revision window (counted in ``late_dropped``) or ``part`` cannot make a bar."""
        closed = self.closed
        if not closed or start < closed[0][0].start_ms:
            self.late_dropped += 1
            return None
        i = len(closed) - 1
        while closed[i][0].start_ms > start:  # stops at 0 at the latest
            i -= 1
        record: _Closed
        if closed[i][0].start_ms == start:
            record = closed[i] = _revised(closed[i], part)
        else:
            if not part.rank:
                return None  # volume alone makes no bar; the coarser buckets keep it
            bar = self.bar_of(part, True, start, end)
            record = (
                msgspec.structs.replace(bar, revision=1),
                part.notional,
                part.first_t,
                part.last_t,
                part.rank,
            )
            if len(closed) == closed.maxlen:
                closed.popleft()  # the gap bar takes the oldest one's place in the window
                i -= 1
            closed.insert(i + 1, record)
        _put_in_order(self.history, record[0])
        return record[0]


def _start(bar: Bar) -> int:
    return bar.start_ms


def _restore_closed(sr: _Series, closed: list[tuple[Bar, _Content]]) -> None:
    """Closed bars (oldest first) as a series' history, the newest in its revision
    window; its buckets up to the last one's end are final."""
    for bar, c in closed:
        sr.history.append(bar)
        sr.closed.append((bar, c.notional, c.first_t, c.last_t, c.rank or 2))
    if closed:
        sr.sealed = max(sr.sealed, closed[-1][0].end_ms)


def _put_in_order(history: deque[Bar], bar: Bar) -> None:
    """Replace the bar with the same start, or insert it in time order (revised bars are
    recent, so the search from the right is short)."""
    i = len(history) - 1
    while i >= 0 and history[i].start_ms > bar.start_ms:
        i -= 1
    if i >= 0 and history[i].start_ms == bar.start_ms:
        history[i] = bar
        return
    if len(history) == history.maxlen:
        if i < 0:
            return  # older than everything a full history keeps
        history.popleft()
        i -= 1
    history.insert(i + 1, bar)


def _ordered(timeframes: Iterable[Timeframe]) -> tuple[Timeframe, ...]:
    wanted = {Timeframe(tf) for tf in timeframes}
    if not wanted:
        raise ValueError("a BarBuilder needs at least one timeframe")
    return tuple(tf for tf in ALL_TIMEFRAMES if tf in wanted)  # finest first


class BarBuilder:
    """Bars of one symbol for a set of timeframes.

    Invariant (what makes the chain of intervals correct): whenever a timeframe has an
    open interval, every coarser timeframe has an open interval containing it. It holds
    because a coarser bucket is never final before the finer buckets inside it (trades
    seal buckets only by starting a later one, which is later for the finer timeframes
    too; the clock seals all timeframes at one cut-off), so a trade that is current for a
    timeframe is current for every coarser one. The true content of a timeframe's forming
    bar is therefore its own content plus that of every finer open interval.
    """

    def __init__(
        self,
        symbol: str,
        timeframes: Iterable[Timeframe] = ALL_TIMEFRAMES,
        *,
        revision_window: int = DEFAULT_REVISION_WINDOW,
        history: int = DEFAULT_HISTORY,
        close_delay_ms: int = DEFAULT_CLOSE_DELAY_MS,
        emit_updates: bool = False,
    ) -> None:
        if revision_window < 0 or history < 1 or close_delay_ms < 0:
            raise ValueError(
                "revision_window and close_delay_ms must be >= 0 and history >= 1 "
                f"(got {revision_window}, {close_delay_ms}, {history})"
            )
        self.symbol = symbol
        self.timeframes = _ordered(timeframes)
        self.close_delay_ms = close_delay_ms
        self.emit_updates = emit_updates
        #: Trades ignored for a non-positive size or price.
        self.ignored = 0
        self._series = tuple(
            _Series(symbol, tf, revision_window, history) for tf in self.timeframes
        )
        self._by_tf = {sr.tf: sr for sr in self._series}
        self._fine = self._series[0]
        #: Buckets ending at or before this are final by the clock (on_clock's cut-off).
        self._clock_cut = 0
        #: No open interval ends before this: on_clock has nothing to close until then.
        self._wake_ms = _NEVER
        #: (timeframe, start) of the bars ``insert_bar`` took, so none counts twice.
        self._inserted: set[tuple[Timeframe, int]] = set()

    # -- the hot path ------------------------------------------------------------------

    def on_trade(self, t_ms: int, price: float, size: int, flags: int = ALL) -> list[BarEvent]:
        """Apply one trade with its update flags (``streams.conditions``); return the
        events it caused, in order."""
        out: list[BarEvent] = []
        if size <= 0 or not flags or not 0.0 < price < _INF:  # also false for NaN
            self.ignored += 1
            return out
        fine = self._fine
        if fine.start <= t_ms < fine.end and flags == ALL and fine.rank == 2:
            # _Content.add inlined for the common case: a regular print in the open
            # finest bar, which already has a last-price print. The coarser intervals
            # contain it and absorb it when it closes.
            if price > fine.high:
                fine.high = price
            elif price < fine.low:
                fine.low = price
            if t_ms >= fine.last_t:
                fine.last_t = t_ms
                fine.close = price
            elif t_ms < fine.first_t:
                fine.first_t = t_ms
                fine.open = price
            fine.volume += size
            fine.notional += price * size
            fine.trades += 1
        elif fine.start <= t_ms < fine.end:
            fine.add(t_ms, price, size, flags)
        else:
            self._other_bucket(t_ms, price, size, flags, out)
        if self.emit_updates:
            self._append_updates(t_ms, out)
        return out

    def _other_bucket(
        self, t_ms: int, price: float, size: int, flags: int, out: list[BarEvent]
    ) -> None:
        """A trade outside the finest forming bar (once per new bucket, not per trade)."""
        part = _Content()
        part.add(t_ms, price, size, flags)
        self._route(t_ms, part, 0, out)

    def _route(
        self, t_ms: int, part: _Content, first: int, out: list[BarEvent], *, backfill: bool = False
    ) -> bool:
        """Route ``part`` (prints at ``t_ms``, or a whole bar starting there) timeframe by
        timeframe from ``self._series[first]``: the first open interval holding it takes
        it (and every coarser one contains that one); a final bucket is revised; a later
        bucket closes the interval and opens the new one, which takes it. ``backfill``:
        leave a bucket the feed is filling, or one that has its bar, alone (``False``)."""
        taken = False
        series = self._series
        for i in range(first, len(series)):
            sr = series[i]
            if sr.start <= t_ms < sr.end:
                if backfill and i == first:
                    return False  # the feed is filling this bucket: it knows better
                if not taken:
                    sr.absorb(part)
                return True
            start, end = sr.bucket(t_ms)
            if end <= sr.sealed or end <= self._clock_cut:
                if backfill and i == first and any(b.start_ms == start for b in sr.history):
                    return False  # we have this bar already (and so do the coarser ones)
                bar = sr.revise(start, end, part)
                if bar is not None:
                    out.append(BarEvent(BarEventKind.REVISION, bar))
                continue
            # A later bucket: the open interval's bucket and all earlier ones are final.
            if sr.end != _NONE:
                self._close(i, out)
            sr.open_interval(start, end)
            self._wake_ms = min(self._wake_ms, end)
            if not taken:
                sr.absorb(part)
                taken = True
        return True

    def _close(self, i: int, out: list[BarEvent]) -> None:
        """Close the open interval of ``self._series[i]``; the next coarser open interval
        (which contains it) absorbs its content. Finer intervals must be closed already."""
        series = self._series
        sr = series[i]
        for j in range(i + 1, len(series)):
            if series[j].end != _NONE:
                series[j].absorb(sr)
                break
        bar = sr.close_interval()
        if bar is not None:
            out.append(BarEvent(BarEventKind.CLOSE, bar))

    # -- restart and backfill ---------------------------------------------------------

    def restore(self, bars: Iterable[Bar]) -> list[BarEvent]:
        """Rebuild this fresh builder from the closed 1s and 1m bars stored for one
        session (others are ignored: coarser bars are rebuilt from the minutes).

        Afterwards the closed history is what was stored, and every coarser timeframe's
        bucket holding the last stored minute is open with what those minutes held, so
        the day's bar (and the hour's...) go on from where they were. Seconds stored
        after the last stored minute make up the 1m bars not stored yet: the last one is
        open, earlier ones are returned as ``CLOSE`` events (to be stored).
        """
        if any(sr.end != _NONE or sr.history for sr in self._series):
            raise ValueError(f"{self.symbol}: restore needs a builder that saw nothing")
        bars = list(bars)
        seconds = sorted((b for b in bars if b.timeframe is Timeframe.S1), key=_start)
        minutes = sorted((b for b in bars if b.timeframe is Timeframe.M1), key=_start)
        out: list[BarEvent] = []
        units = [(m.start_ms, _Content.of_bar(m)) for m in minutes]
        after = minutes[-1].end_ms if minutes else -_NEVER
        derived: dict[int, _Content] = {}
        for sec in seconds:
            if sec.start_ms >= after:
                minute = sec.start_ms - sec.start_ms % 60_000
                derived.setdefault(minute, _Content()).absorb(_Content.of_bar(sec))
        pending = sorted(derived.items())
        open_minute = pending.pop() if pending else None
        by_tf = self._by_tf
        if Timeframe.S1 in by_tf:
            _restore_closed(by_tf[Timeframe.S1], [(b, _Content.of_bar(b)) for b in seconds])
        if Timeframe.M1 in by_tf:
            sr = by_tf[Timeframe.M1]
            extra = [(sr.bar_of(c, True, m, m + 60_000), c) for m, c in pending]
            _restore_closed(sr, [(b, _Content.of_bar(b)) for b in minutes] + extra)
            out.extend(BarEvent(BarEventKind.CLOSE, b) for b, _ in extra)
            if open_minute is not None:
                sr.open_interval(open_minute[0], open_minute[0] + 60_000)
                sr.absorb(open_minute[1])
        units.extend(pending)
        finer_open = (open_minute[0], open_minute[0] + 60_000) if open_minute is not None else None
        if open_minute is not None:
            units.append(open_minute)
        if not units:
            return out
        last = max(start for start, _ in units)
        for sr in self._series:
            if sr.tf in (Timeframe.S1, Timeframe.M1):
                continue
            start, end = sr.bucket(last)
            groups: dict[int, _Content] = {}
            own = _Content()
            for u_start, content in units:
                if u_start >= start:
                    if finer_open is None or not finer_open[0] <= u_start < finer_open[1]:
                        own.absorb(content)
                else:
                    groups.setdefault(sr.bucket(u_start)[0], _Content()).absorb(content)
            _restore_closed(
                sr, [(sr.bar_of(c, True, *sr.bucket(g)), c) for g, c in sorted(groups.items())]
            )
            sr.open_interval(start, end)
            sr.absorb(own)
            self._wake_ms = min(self._wake_ms, end)
            finer_open = (start, end)
        return out

    def insert_bar(self, bar: Bar) -> list[BarEvent] | None:
        """Add a closed bar fetched from history for a bucket the feed missed (a gap):
        it becomes a bar of its timeframe (``REVISION``: a final "no bar" was revised;
        none when the bucket is older than the revision window) and its content is
        added to the coarser buckets holding it: forming ones silently, final ones as
        ``REVISION``s. ``None`` when the bar was not taken: a bar is there already, the
        feed is filling that bucket now, or the same bar was inserted before."""
        if bar.timeframe not in self._by_tf:
            return None
        seen = (bar.timeframe, bar.start_ms)
        if seen in self._inserted:
            return None  # once is enough, whatever became of it
        if len(self._inserted) >= _INSERTED_MAX:
            self._inserted.clear()
        self._inserted.add(seen)
        out: list[BarEvent] = []
        first = self.timeframes.index(bar.timeframe)
        if not self._route(bar.start_ms, _Content.of_bar(bar), first, out, backfill=True):
            return None
        return out

    def on_clock(self, now_ms: int) -> list[BarEvent]:
        """Close the bars whose bucket ended at least ``close_delay_ms`` before ``now_ms``;
        buckets up to there are final from now on. Cheap when nothing is due."""
        cut = now_ms - self.close_delay_ms
        self._clock_cut = max(self._clock_cut, cut)
        out: list[BarEvent] = []
        if cut < self._wake_ms:
            return out
        wake = _NEVER
        for i, sr in enumerate(self._series):  # finest first: it is absorbed, then closed
            if sr.end == _NONE:
                continue
            if sr.end <= cut:
                self._close(i, out)
            elif sr.end < wake:
                wake = sr.end
        self._wake_ms = wake
        return out

    # -- reading -----------------------------------------------------------------------

    def _open_contents(self) -> Iterator[tuple[_Series, _Content]]:
        """Each open interval with everything it holds (its own content plus that of the
        finer open intervals inside it), finest first, as new objects."""
        finer: _Content | None = None
        for sr in self._series:
            if sr.end == _NONE:
                continue
            content = _Content()
            content.absorb(sr)  # its own content first: older, and absorb() orders ties
            if finer is not None:
                content.absorb(finer)
            finer = content
            yield sr, content

    def _append_updates(self, t_ms: int, out: list[BarEvent]) -> None:
        for sr, content in self._open_contents():
            if sr.start <= t_ms < sr.end and content.rank:
                out.append(BarEvent(BarEventKind.UPDATE, sr.bar_of(content, False)))

    def forming(self, timeframe: Timeframe) -> Bar | None:
        """The bar of ``timeframe`` still forming (``final`` false), if any."""
        wanted = self._get(timeframe)
        for sr, content in self._open_contents():
            if sr is wanted:
                return sr.bar_of(content, False) if content.rank else None
        return None

    def recent(self, timeframe: Timeframe, limit: int | None = None) -> list[Bar]:
        """The most recent closed bars (at most ``limit``; all that are kept when
        ``None``), oldest first, revisions applied."""
        history = self._get(timeframe).history
        skip = 0 if limit is None else max(0, len(history) - max(0, limit))
        return list(islice(history, skip, None))

    @property
    def late_dropped(self) -> dict[Timeframe, int]:
        """Late trades dropped (outside the revision window), per timeframe."""
        return {tf: sr.late_dropped for tf, sr in self._by_tf.items()}

    def _get(self, timeframe: Timeframe) -> _Series:
        try:
            return self._by_tf[timeframe]
        except KeyError:
            raise ValueError(
                f"{self.symbol}: no {timeframe} bars are built "
                f"(timeframes: {', '.join(self.timeframes)})"
            ) from None


class BarBook:
    """The ``BarBuilder``s of every symbol, created on first use with shared settings."""

    def __init__(
        self,
        timeframes: Iterable[Timeframe] = ALL_TIMEFRAMES,
        *,
        revision_window: int = DEFAULT_REVISION_WINDOW,
        history: int = DEFAULT_HISTORY,
        close_delay_ms: int = DEFAULT_CLOSE_DELAY_MS,
        emit_updates: bool = False,
    ) -> None:
        self.timeframes = _ordered(timeframes)
        self._options = (revision_window, history, close_delay_ms, emit_updates)
        self._builders: dict[str, BarBuilder] = {}

    def builder(self, symbol: str) -> BarBuilder:
        found = self._builders.get(symbol)
        if found is None:
            revision_window, history, close_delay_ms, emit_updates = self._options
            found = self._builders[symbol] = BarBuilder(
                symbol,
                self.timeframes,
                revision_window=revision_window,
                history=history,
                close_delay_ms=close_delay_ms,
                emit_updates=emit_updates,
            )
        return found

    def get(self, symbol: str) -> BarBuilder | None:
        return self._builders.get(symbol)

    def day(self, symbol: str) -> Bar | None:
        """The symbol's day bar (its day statistics): forming, or the last one closed."""
        builder = self._builders.get(symbol)
        if builder is None or Timeframe.D1 not in self.timeframes:
            return None
        forming = builder.forming(Timeframe.D1)
        if forming is not None:
            return forming
        closed = builder.recent(Timeframe.D1, 1)
        return closed[-1] if closed else None

    def symbols(self) -> list[str]:
        """Every symbol that has had a trade."""
        return list(self._builders)

    def on_trade(
        self, symbol: str, t_ms: int, price: float, size: int, flags: int = ALL
    ) -> list[BarEvent]:
        return self.builder(symbol).on_trade(t_ms, price, size, flags)

    def on_clock(self, now_ms: int) -> list[BarEvent]:
        out: list[BarEvent] = []
        for builder in self._builders.values():
            events = builder.on_clock(now_ms)
            if events:
                out.extend(events)
        return out

    def __len__(self) -> int:
        return len(self._builders)


# -- cross-checking against Polygon's aggregates --------------------------------------

#: Polygon rounds ``vw`` to four decimals; prices of the same prints compare exactly.
DEFAULT_PRICE_TOLERANCE = 1e-4


def compare_with_aggregate(
    bar: Bar,
    agg: Aggregate,
    *,
    price_tolerance: float = DEFAULT_PRICE_TOLERANCE,
    volume_tolerance: int = 0,
) -> list[str]:
    """How a self-built 1s (``A``) or 1m (``AM``) bar differs from Polygon's aggregate for
    the same window; empty when they agree within the tolerances. A ``vw`` of 0 (absent)
    is not compared. Differences are expected where Polygon's condition rules exclude
    prints we counted, so this is for monitoring, not an assertion."""
    expected_tf = Timeframe.M1 if isinstance(agg, MinuteAggregate) else Timeframe.S1
    diffs: list[str] = []
    if bar.symbol != agg.sym:
        diffs.append(f"symbol: bar {bar.symbol} != aggregate {agg.sym}")
    if bar.timeframe is not expected_tf:
        diffs.append(f"timeframe: bar {bar.timeframe} != aggregate {expected_tf}")
    if (bar.start_ms, bar.end_ms) != (agg.s, agg.e):
        diffs.append(f"window: bar [{bar.start_ms}, {bar.end_ms}) != aggregate [{agg.s}, {agg.e})")
    for name, ours, theirs in (
        ("open", bar.open, agg.o),
        ("high", bar.high, agg.h),
        ("low", bar.low, agg.l),
        ("close", bar.close, agg.c),
        ("vwap", bar.vwap, agg.vw),
    ):
        if name == "vwap" and theirs == 0.0:
            continue
        if not abs(ours - theirs) <= price_tolerance:  # "not <=": a NaN is a difference
            diffs.append(f"{name}: bar {ours} != aggregate {theirs} (±{price_tolerance:g})")
    if abs(bar.volume - agg.v) > volume_tolerance:
        diffs.append(f"volume: bar {bar.volume} != aggregate {agg.v} (±{volume_tolerance})")
    return diffs


__all__ = [
    "DEFAULT_CLOSE_DELAY_MS",
    "DEFAULT_HISTORY",
    "DEFAULT_PRICE_TOLERANCE",
    "DEFAULT_REVISION_WINDOW",
    "BarBook",
    "BarBuilder",
    "BarEvent",
    "BarEventKind",
    "compare_with_aggregate",
]
