"""Resting orders of one symbol in one window (regular or extended hours), indexed so
that a tick far from every order costs a few comparisons, whatever their number.

Each kind of resting order can only be reached from one side, so each needs only its
best entry on every tick:

- buy limits fill when the ask comes down to them (or a trade goes below): the highest
  buy limit is the only one to look at; sell limits mirror it;
- buy stops trigger when a trade reaches them from below: the lowest buy stop; sell
  stops mirror it;
- trailing stops: ``brokers.paper.trailing``.

Limits and stops are binary heaps keyed by (price, submission seq), deleted lazily:
an entry whose order has a newer ``version`` is dead, dropped when it reaches the top
(and all at once when the dead outnumber the living). ``NaiveBook`` (the reference the
tests and the benchmark compare with) answers the same questions by scanning.
"""

from __future__ import annotations

from heapq import heapify, heappop, heappush
from typing import Protocol

from brokers.paper.trailing import TrailingSide
from brokers.paper.working import SCALE, Mode, Working

HeapEntry = tuple[int, int, int, Working]  # (key, seq, version, order)


class Book(Protocol):
    """What the matching engine asks of a book of resting orders."""

    def __len__(self) -> int: ...

    def add_limit(self, order: Working) -> None: ...

    def add_stop(self, order: Working) -> None: ...

    def add_trailing(self, order: Working, water_ticks: int | None) -> None:
        """Trail from ``water_ticks`` (``None``: from the next trade)."""
        ...

    def remove(self, order: Working) -> None:
        """Take ``order`` out of whichever structure its ``mode`` says it is in, and
        bump its ``version``."""
        ...

    def best_buy_limit(self) -> Working | None:
        """The highest buy limit (earliest submitted among equals)."""
        ...

    def best_sell_limit(self) -> Working | None: ...

    def trade(self, ticks: int) -> list[tuple[int, Working]]:
        """A trade at ``ticks``: move trailing water marks, then take out every stop and
        trailing stop it triggers, with its stop price * ``SCALE`` (unsorted)."""
        ...

    def water_of(self, order: Working) -> int | None:
        """A trailing stop's water mark (a price in ticks), if it has one yet."""
        ...


class _Heap:
    __slots__ = ("entries", "live", "sign")

    def __init__(self, sign: int) -> None:
        self.entries: list[HeapEntry] = []
        self.live = 0
        #: +1: lowest price first; -1: highest first.
        self.sign = sign

    def push(self, price: int, order: Working) -> None:
        heappush(self.entries, (price * self.sign, order.seq, order.version, order))
        self.live += 1

    def top(self) -> Working | None:
        entries = self.entries
        while entries:
            entry = entries[0]
            order = entry[3]
            if order.version == entry[2]:
                return order
            heappop(entries)
        return None

    def dropped(self) -> None:
        """One order left (its version was bumped): compact when mostly dead."""
        self.live -= 1
        if len(self.entries) > 2 * self.live + 64:
            self.entries = [e for e in self.entries if e[3].version == e[2]]
            heapify(self.entries)


class IndexedBook:
    __slots__ = (
        "buy_limits",
        "buy_stops",
        "buy_trailing",
        "sell_limits",
        "sell_stops",
        "sell_trailing",
    )

    def __init__(self) -> None:
        self.buy_limits = _Heap(-1)
        self.sell_limits = _Heap(1)
        self.buy_stops = _Heap(1)
        self.sell_stops = _Heap(-1)
        self.buy_trailing = TrailingSide(buy=True)
        self.sell_trailing = TrailingSide(buy=False)

    def __len__(self) -> int:
        return (
            self.buy_limits.live
            + self.sell_limits.live
            + self.buy_stops.live
            + self.sell_stops.live
            + len(self.buy_trailing)
            + len(self.sell_trailing)
        )

    def add_limit(self, order: Working) -> None:
        order.mode = Mode.LIMIT
        (self.buy_limits if order.is_buy else self.sell_limits).push(order.limit, order)

    def add_stop(self, order: Working) -> None:
        order.mode = Mode.STOP
        (self.buy_stops if order.is_buy else self.sell_stops).push(order.stop, order)

    def add_trailing(self, order: Working, water_ticks: int | None) -> None:
        order.mode = Mode.TRAILING
        (self.buy_trailing if order.is_buy else self.sell_trailing).add(order, water_ticks)

    def remove(self, order: Working) -> None:
        mode = order.mode
        order.version += 1
        if mode is Mode.LIMIT:
            (self.buy_limits if order.is_buy else self.sell_limits).dropped()
        elif mode is Mode.STOP:
            (self.buy_stops if order.is_buy else self.sell_stops).dropped()
        elif mode is Mode.TRAILING:
            (self.buy_trailing if order.is_buy else self.sell_trailing).remove(order)

    def best_buy_limit(self) -> Working | None:
        entries = self.buy_limits.entries
        if entries:
            top = entries[0]
            if top[3].version == top[2]:  # the usual case, without a call
                return top[3]
            return self.buy_limits.top()
        return None

    def best_sell_limit(self) -> Working | None:
        entries = self.sell_limits.entries
        if entries:
            top = entries[0]
            if top[3].version == top[2]:
                return top[3]
            return self.sell_limits.top()
        return None

    def trade(self, ticks: int) -> list[tuple[int, Working]]:
        out: list[tuple[int, Working]] = []
        heap = self.buy_stops
        while (order := heap.top()) is not None and order.stop <= ticks:
            self.remove(order)
            out.append((order.stop * SCALE, order))
        heap = self.sell_stops
        while (order := heap.top()) is not None and order.stop >= ticks:
            self.remove(order)
            out.append((order.stop * SCALE, order))
        for side, sign in ((self.buy_trailing, -1), (self.sell_trailing, 1)):
            if side.count:
                side.observe(ticks)
                for key, order in side.triggered(ticks):
                    order.version += 1
                    out.append((key * sign, order))
        return out

    def water_of(self, order: Working) -> int | None:
        return (self.buy_trailing if order.is_buy else self.sell_trailing).water_of(order)
