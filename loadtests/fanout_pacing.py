"""A steady, controlled offered load: a recording's quotes at a fixed rate (``--rate``).

A real day is bursty (quiet stretches, then hundreds of quotes in a millisecond), so a
replay at ``--speed`` offers a load that changes under the measurement. ``--rate N``
offers exactly N quotes per second **in total, over all symbols** (each of S symbols
gets N / S), whatever the recording's own pace:

- the recording's quotes are read once, in file order, and emitted in that order, each
  repeated under every symbol (the clones), round after round;
- pacing is anchored: quote n is due at ``anchor + n / rate``, so sleep overshoot does
  not accumulate; due quotes are grouped into one frame at most every ``TICK_S``
  (200 frames/s), as a real feed groups what happens in the same moment;
- a source held up for more than ``MAX_LAG_S`` (an upstream server waiting for a
  saturated target to read) drops the backlog and re-anchors instead of bursting it
  out; ``lag_resets`` counts how often. What was offered is counted, not assumed;
- the file loops forever. Every round shifts ``q`` by the recording's largest sequence
  number (+1), so per-symbol sequence numbers keep increasing: tickgraph drops a quote
  whose ``q`` is not above the last one of its symbol;
- each quote's ``t`` (the exchange's timestamp, tickgraph's ``exchangeTime``) is the
  wall-clock millisecond it was sent (``stamp``; otherwise the recorded time, shifted by
  the recording's span every round). Subscribers that select ``exchangeTime`` thus
  measure latency from the feed itself, which includes any backlog in front of a server
  that reads its feed slower than it is offered (``receivedAt`` starts after it).

Trades are left out: the subscribers measure quotes, and the baselines subscribe to
quotes only, so every target is offered the very same upstream stream.

The rate and the symbols can change while the source runs (the harness steps the rate
for the saturation scenario and switches symbols between scenarios); sequence numbers
stay increasing for every symbol across such changes.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

import msgspec

from streams.events import MarketEvent, Quote
from streams.recording import LoopShift, load_events

#: Shortest interval between two frames.
TICK_S: Final = 0.005
#: Falling further behind than this drops the backlog.
MAX_LAG_S: Final = 0.5
#: Most quotes in one frame (a backlog up to MAX_LAG_S is spread over several).
MAX_FRAME_EVENTS: Final = 500


class Pacer:
    """Anchored pacing of ``rate`` events per second, grouped in ticks. Pure arithmetic
    on a clock passed in: ``take(now)`` says how many events to emit now, ``wait_s(now)``
    how long to sleep before asking again."""

    def __init__(self, rate: float) -> None:
        self.rate = _check_rate(rate)
        self.anchor: float | None = None
        self.sent = 0  # events emitted since the anchor
        self.last_take = -math.inf
        self.lag_resets = 0

    def set_rate(self, rate: float) -> None:
        """Change the rate from now on (re-anchors: no catch-up at the new rate)."""
        self.rate = _check_rate(rate)
        self.anchor = None

    def reset(self) -> None:
        """Nobody listens: the next ``take`` starts afresh."""
        self.anchor = None

    def due(self, now: float) -> int:
        """Events due by ``now`` and not yet emitted (the first one is due at the anchor)."""
        if self.anchor is None:
            return 1
        return math.floor((now - self.anchor) * self.rate) + 1 - self.sent

    def take(self, now: float) -> int:
        if now - self.last_take < TICK_S and self.anchor is not None:
            return 0
        if self.anchor is None:
            self.anchor, self.sent = now, 0
        elif self.due(now) > self.rate * MAX_LAG_S + 1:
            self.lag_resets += 1
            self.anchor, self.sent = now, 0
        n = min(self.due(now), MAX_FRAME_EVENTS)
        if n <= 0:
            return 0
        self.sent += n
        self.last_take = now
        return n

    def wait_s(self, now: float) -> float:
        """Until the next event is due and a tick has passed since the last frame."""
        if self.anchor is None:
            return 0.0
        next_due = self.anchor + self.sent / self.rate
        return max(0.0, next_due - now, self.last_take + TICK_S - now)


def _check_rate(rate: float) -> float:
    if not (rate > 0.0 and math.isfinite(rate)):
        raise ValueError(f"rate must be positive and finite, got {rate!r}")
    return rate


def loop_shift(quotes: Sequence[Quote]) -> LoopShift:
    """How far each round moves ``t`` and ``q``: one past the span and the largest ``q``,
    so round k+1 starts strictly after round k in both."""
    if not quotes:
        raise ValueError("no quotes")
    first = min(q.t for q in quotes)
    last = max(q.t for q in quotes)
    return LoopShift(time_ms=last - first + 1, seq=max(q.q for q in quotes) + 1)


class LoopedQuotes:
    """The quotes of a recording round after round, each under every symbol in turn."""

    def __init__(self, quotes: Sequence[Quote], symbols: Sequence[str]) -> None:
        self.quotes = tuple(quotes)
        self.shift = loop_shift(self.quotes)
        self.symbols = _check_symbols(symbols)
        self.round = 0
        self.position = 0  # next quote of the recording
        self._base: Quote | None = None  # the quote being cloned, shifted to its round
        self._pending: deque[str] = deque()  # symbols it still has to go out under

    def set_symbols(self, symbols: Sequence[str]) -> None:
        self.symbols = _check_symbols(symbols)
        self._pending.clear()

    def next(self, t_ms: int | None = None) -> Quote:
        """The next quote; stamped ``t_ms`` when given (else its shifted recorded time)."""
        pending = self._pending
        if not pending:
            base = self.quotes[self.position]
            k = self.round
            self._base = msgspec.structs.replace(
                base, t=base.t + k * self.shift.time_ms, q=base.q + k * self.shift.seq
            )
            pending.extend(self.symbols)
            self.position += 1
            if self.position == len(self.quotes):
                self.position = 0
                self.round += 1
        assert self._base is not None
        sym = pending.popleft()
        if t_ms is None:
            return msgspec.structs.replace(self._base, sym=sym)
        return msgspec.structs.replace(self._base, sym=sym, t=t_ms)


def _check_symbols(symbols: Sequence[str]) -> tuple[str, ...]:
    if not symbols:
        raise ValueError("at least one symbol")
    return tuple(symbols)


class PacedQuoteSource:
    """A ``streams.polygon_server.FrameSource``: ``LoopedQuotes`` paced by a ``Pacer``;
    counts the quotes it offers, in total and per symbol inside the measurement window."""

    hold_when_paused = True
    unpaced = False
    paced = True

    def __init__(
        self,
        path: Path,
        symbols: Sequence[str],
        *,
        rate: float,
        stamp: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        quotes = [ev for ev in load_events(path) if isinstance(ev, Quote)]
        self.quotes = LoopedQuotes(quotes, symbols)
        self.pacer = Pacer(rate)
        #: Quotes carry the time they were sent (``t``, epoch ms), not the recorded one.
        self.stamp = stamp
        self._clock = clock
        self.quotes_offered: Counter[str] = Counter()
        self.events_offered_total = 0
        self.window: tuple[float, float] | None = None

    @property
    def symbols(self) -> tuple[str, ...]:
        return self.quotes.symbols

    @property
    def rate(self) -> float:
        return self.pacer.rate

    @property
    def lag_resets(self) -> int:
        return self.pacer.lag_resets

    def configure(self, *, rate: float | None = None, symbols: Sequence[str] | None = None) -> None:
        if symbols is not None and tuple(symbols) != self.quotes.symbols:
            self.quotes.set_symbols(symbols)
        if rate is not None and rate != self.pacer.rate:
            self.pacer.set_rate(rate)

    def open_window(self, start: float, end: float) -> None:
        """Count offered quotes per symbol between these epoch times (from zero)."""
        self.quotes_offered = Counter()
        self.window = (start, end)

    async def next_frame(self) -> Sequence[MarketEvent] | None:
        pacer = self.pacer
        n = pacer.take(self._clock())
        while n == 0:
            await asyncio.sleep(pacer.wait_s(self._clock()))
            n = pacer.take(self._clock())
        quotes = self.quotes
        t_ms = time.time_ns() // 1_000_000 if self.stamp else None
        frame = [quotes.next(t_ms) for _ in range(n)]
        self.events_offered_total += n
        window = self.window
        if window is not None and window[0] <= time.time() <= window[1]:
            offered = self.quotes_offered
            for ev in frame:
                offered[ev.sym] += 1
        return frame

    def pause(self) -> None:
        self.pacer.reset()

    def on_subscribe(self, channel: str, symbol: str) -> None:
        """The symbols are the harness's to choose."""
