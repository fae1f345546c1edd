"""The reference book: every question answered by scanning every resting order.

Same answers as ``IndexedBook`` (the tests replay whole days through both engines
and compare every event); the benchmark measures what the index saves.
"""

from __future__ import annotations

from brokers.paper.working import SCALE, Mode, Working


class NaiveBook:
    __slots__ = ("orders",)

    def __init__(self) -> None:
        #: Resting orders by submission seq (dicts keep insertion order).
        self.orders: dict[int, Working] = {}

    def __len__(self) -> int:
        return len(self.orders)

    def add_limit(self, order: Working) -> None:
        order.mode = Mode.LIMIT
        self.orders[order.seq] = order

    def add_stop(self, order: Working) -> None:
        order.mode = Mode.STOP
        self.orders[order.seq] = order

    def add_trailing(self, order: Working, water_ticks: int | None) -> None:
        order.mode = Mode.TRAILING
        order.water = water_ticks
        self.orders[order.seq] = order

    def remove(self, order: Working) -> None:
        order.version += 1
        self.orders.pop(order.seq, None)

    def _best_limit(self, buy: bool) -> Working | None:
        best: Working | None = None
        for order in self.orders.values():
            if order.mode is not Mode.LIMIT or order.is_buy is not buy:
                continue
            if best is None:
                best = order
                continue
            better = order.limit > best.limit if buy else order.limit < best.limit
            if better or (order.limit == best.limit and order.seq < best.seq):
                best = order
        return best

    def best_buy_limit(self) -> Working | None:
        return self._best_limit(True)

    def best_sell_limit(self) -> Working | None:
        return self._best_limit(False)

    def trade(self, ticks: int) -> list[tuple[int, Working]]:
        out: list[tuple[int, Working]] = []
        for order in list(self.orders.values()):
            if order.mode is Mode.STOP:
                if (order.stop <= ticks) if order.is_buy else (order.stop >= ticks):
                    self.remove(order)
                    out.append((order.stop * SCALE, order))
            elif order.mode is Mode.TRAILING:
                buy = order.is_buy
                if order.water is None or (ticks < order.water if buy else ticks > order.water):
                    order.water = ticks
                oriented = -order.water if buy else order.water
                key = order.trail_key(oriented, buy)
                if key >= (-ticks if buy else ticks) * SCALE:
                    self.remove(order)
                    out.append((-key if buy else key, order))
        return out

    def water_of(self, order: Working) -> int | None:
        return order.water
