"""Bars through outages and restarts: what the feed missed is backfilled from history or
announced as a GAP, never left silently short.

Three ways a window goes missing:

* **A reconnect.** The upstream dropped; everything between the feed clock at the drop
  and the first event of the new session is missing, for every symbol.
* **A restart.** At start-up each universe symbol's latest session that did not close
  (its day bar is not stored) is rebuilt from the stored 1s and 1m bars
  (``BarBuilder.restore``): the day's statistics and the forming bars go on from where
  they were. The window from the end of the last stored bar to the symbol's first event
  after the restart is missing.
* **A start.** A symbol whose day this process did not see from its beginning (nothing
  of it was stored, or the server starts mid-day): the window from the start of the New
  York day to its first trade is missing. The day's statistics cover what was seen,
  and the GAP says from when.

When the first event after the window arrives, the 1m bars lying wholly inside it are
fetched from history (Polygon REST with a real key, our own store, the simulated
market's past) and inserted (``BarBuilder.insert_bar``: the bars of the gap appear as
``REVISION`` events, the day's and the hour's bars take their content, everything is
stored). A ``Gap`` is then published on ``G.<symbol>`` (the ``bars`` subscription shows
it as a GAP) and kept for ``gaps(symbol)``: ``filled`` says whether history had the
bars, and the bar of the minute in which the feed resumed holds only what arrived since.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

import msgspec

from server.history.provider import HistoryProvider
from server.market.bars import BarBook, BarEvent
from server.market.timeframes import Bar, Timeframe
from server.market.trading_day import day_window
from server.storage.bars import BarWriter

log = logging.getLogger(__name__)

#: Gaps kept per symbol for ``gaps``.
GAPS_KEPT = 100


def gaps_topic(symbol: str) -> str:
    return f"G.{symbol}"


class Gap(msgspec.Struct, frozen=True, gc=False):
    """The feed missed ``[from_ms, to_ms)`` (exchange time) of ``symbol``. ``filled``:
    the 1m bars wholly inside were fetched from history and inserted (``bars`` of them);
    ``reason``: why it happened (``start``, ``restart``, ``reconnect``)."""

    symbol: str
    from_ms: int
    to_ms: int
    filled: bool
    bars: int
    reason: str = "reconnect"


class BarRecovery:
    def __init__(
        self,
        book: BarBook,
        history: HistoryProvider,
        writer: BarWriter | None,
        publish: Callable[[str, object], None],
        on_bar_events: Callable[[list[BarEvent], int], None],
    ) -> None:
        self._book = book
        self._history = history
        self._writer = writer
        self._publish = publish
        self._on_bar_events = on_bar_events
        #: Something is waiting for a first event (the hot path checks this only).
        self.armed = False
        self._session_from: int | None = None
        self._restarted: dict[str, int] = {}
        self._gaps: dict[str, deque[Gap]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def restore(self, symbol: str, bars: list[Bar]) -> None:
        """Rebuild ``symbol``'s bars from its stored session (1s and 1m bars) and wait
        for its first event to backfill what came after them."""
        if not bars:
            return
        events = self._book.builder(symbol).restore(bars)
        if events and self._writer is not None:
            for event in events:
                self._writer.submit(event.bar)
        self._restarted[symbol] = max(b.end_ms for b in bars)
        self.armed = True

    def first_trade(self, symbol: str, t_ms: int) -> None:
        """The first trade of ``symbol`` this process sees (its bars start here): the day
        before it is missing unless a restart is already waiting to cover it."""
        if symbol in self._restarted:
            return
        start = day_window(t_ms).start_ms
        if t_ms > start:
            self._schedule(symbol, start, t_ms, "start")

    def new_session(self, clock_ms: int) -> None:
        """The upstream reconnected; its clock was at ``clock_ms`` (0: never started)."""
        if clock_ms:
            self._session_from = clock_ms
            self.armed = True

    def on_event(self, symbol: str, t_ms: int) -> None:
        """A (screened) event of ``symbol`` at ``t_ms``: is it the first after a window?"""
        if self._session_from is not None:
            gap_from, self._session_from = self._session_from, None
            if t_ms > gap_from:
                for sym in self._book.symbols():
                    self._schedule(sym, gap_from, t_ms, "reconnect")
        start = self._restarted.pop(symbol, None)
        if start is not None and t_ms > start:
            self._schedule(symbol, start, t_ms, "restart")
        self.armed = self._session_from is not None or bool(self._restarted)

    def gaps(self, symbol: str) -> list[Gap]:
        """The gaps of ``symbol`` this process knows of, oldest first."""
        return list(self._gaps.get(symbol, ()))

    async def wait(self) -> None:
        """Until every scheduled backfill has finished (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _schedule(self, symbol: str, from_ms: int, to_ms: int, reason: str) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # driven without an event loop (a benchmark): no history
            self._announce(Gap(symbol, from_ms, to_ms, False, 0, reason))
            return
        task = loop.create_task(
            self._backfill(symbol, from_ms, to_ms, reason), name=f"backfill {symbol}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _announce(self, gap: Gap) -> None:
        self._gaps.setdefault(gap.symbol, deque(maxlen=GAPS_KEPT)).append(gap)
        self._publish(gaps_topic(gap.symbol), gap)

    async def _backfill(self, symbol: str, from_ms: int, to_ms: int, reason: str) -> None:
        bars: list[Bar] = []
        try:
            bars = await self._history.range(symbol, Timeframe.M1, from_ms, to_ms)
        except Exception as exc:
            log.warning("gap %s..%s of %s not backfilled: %s", from_ms, to_ms, symbol, exc)
        builder = self._book.builder(symbol)
        for bar in bars:
            # From here on nothing awaits: the builder cannot change under us.
            events = builder.insert_bar(bar)
            if events is None:
                continue  # we had it, or the feed is filling that bucket
            if events:
                self._on_bar_events(events, bar.end_ms)
            own = any(
                e.bar.timeframe is bar.timeframe and e.bar.start_ms == bar.start_ms for e in events
            )
            if self._writer is not None and not own:
                self._writer.submit(bar)  # beyond the revision window: still stored
        self._announce(Gap(symbol, from_ms, to_ms, bool(bars), len(bars), reason))
        log.info(
            "gap %s..%s of %s (%s): %s",
            from_ms,
            to_ms,
            symbol,
            reason,
            f"{len(bars)} bars from history" if bars else "nothing in history",
        )


__all__ = ["GAPS_KEPT", "BarRecovery", "Gap", "gaps_topic"]
