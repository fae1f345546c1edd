"""Trailing stops of one side of one book, indexed so that a trade costs O(1) unless
it moves a water mark past another group's or triggers something.

Orientation: prices are given as the side sees them: a sell trailing stop follows the
highest trade (its *water*) and triggers when a trade falls to ``water - trail`` (or
``water * (1 - pct)``). A buy trailing stop is the same with prices negated (its water
is minus the lowest trade), so one implementation serves both.

Groups. An order's water is the highest trade since it started trailing. When a trade
``p`` comes, every order whose water is below ``p`` gets water ``p``: from then on they
share it. So orders form groups (clusters) with a common water: a trade merges all the
groups whose water is below it into one (union-find, smaller into larger), and a group
never needs to touch its members to move. Within a group, the stops are
``water - trail``: the member with the smallest trail has the highest stop, so each
group keeps its members in a heap by trail (absolute trails and percentages apart).
A heap over the groups, keyed by their highest stop (entries are refreshed lazily when
a group changes), says at once whether any stop is at or above the trade.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from heapq import heapify, heappop, heappush

from brokers.paper.working import SCALE, Working

Entry = tuple[int, int, int, Working]  # (trail, seq, version, order)


class Cluster:
    __slots__ = ("abs", "alive", "parent", "pct", "serial", "stamp", "water")

    def __init__(self, water: int, serial: int) -> None:
        self.water = water
        #: Breaks ties in the heap of groups (never ``id()``: runs must be reproducible).
        self.serial = serial
        self.parent: Cluster | None = None
        self.abs: list[Entry] = []  # (trail ticks, seq, version, order)
        self.pct: list[Entry] = []  # (trail ppm, seq, version, order)
        self.alive = 0
        #: Bumped when the group's best stop may have changed (lazy heap entries).
        self.stamp = 0

    def root(self) -> Cluster:
        node = self
        while node.parent is not None:
            node = node.parent
        # Path compression.
        walk = self
        while walk.parent is not None and walk.parent is not node:
            walk.parent, walk = node, walk.parent
        return node

    def _top(self, heap: list[Entry]) -> Entry | None:
        while heap:
            entry = heap[0]
            order = entry[3]
            if order.version == entry[2] and order.cluster is not None:
                return entry
            heappop(heap)
        return None

    def best_key(self, buy: bool) -> int | None:
        """The highest scaled stop among the members, or None."""
        best = None
        top = self._top(self.abs)
        if top is not None:
            best = (self.water - top[0]) * SCALE
        top = self._top(self.pct)
        if top is not None:
            key = self.water * (SCALE + top[0] if buy else SCALE - top[0])
            if best is None or key > best:
                best = key
        return best


class TrailingSide:
    __slots__ = ("buy", "count", "groups", "serials", "tops", "unanchored", "waters")

    def __init__(self, buy: bool) -> None:
        self.buy = buy
        #: Root groups by water, and their waters ascending.
        self.groups: dict[int, Cluster] = {}
        self.waters: list[int] = []
        #: (-best key, serial, stamp, group): the group with the highest stop first.
        self.tops: list[tuple[int, int, int, Cluster]] = []
        #: Orders that have no trade to trail yet.
        self.unanchored: list[Working] = []
        self.count = 0
        self.serials = 0

    def __len__(self) -> int:
        return self.count

    def _orient(self, ticks: int) -> int:
        return -ticks if self.buy else ticks

    def _push_top(self, group: Cluster) -> None:
        group.stamp += 1
        key = group.best_key(self.buy)
        if key is not None:
            heappush(self.tops, (-key, group.serial, group.stamp, group))
        if len(self.tops) > 2 * len(self.groups) + 64:
            # Mostly stale entries (every new high leaves one): keep the live ones.
            self.tops = [e for e in self.tops if e[2] == e[3].stamp and e[3].parent is None]
            heapify(self.tops)

    def add(self, order: Working, water_ticks: int | None) -> None:
        """Start trailing from ``water_ticks`` (a price; ``None``: from the next trade)."""
        self.count += 1
        if water_ticks is None:
            order.cluster = None
            self.unanchored.append(order)
            return
        self._join(order, self._orient(water_ticks))

    def _join(self, order: Working, water: int) -> None:
        group = self.groups.get(water)
        if group is None:
            self.serials += 1
            group = self.groups[water] = Cluster(water, self.serials)
            insort(self.waters, water)
        entry: Entry
        if order.trail_abs:
            entry = (order.trail_abs, order.seq, order.version, order)
            heappush(group.abs, entry)
        else:
            entry = (order.trail_ppm, order.seq, order.version, order)
            heappush(group.pct, entry)
        group.alive += 1
        order.cluster = group
        self._push_top(group)

    def remove(self, order: Working) -> None:
        """Take ``order`` out (its caller bumps ``order.version``)."""
        if order in self.unanchored:
            self.unanchored.remove(order)
            self.count -= 1
            return
        cluster = order.cluster
        if not isinstance(cluster, Cluster):
            return
        group = cluster.root()
        order.cluster = None
        group.alive -= 1
        self.count -= 1
        if group.alive == 0:
            del self.groups[group.water]
            del self.waters[bisect_left(self.waters, group.water)]
            group.stamp += 1
        else:
            self._push_top(group)

    def water_of(self, order: Working) -> int | None:
        """The order's water mark as a price in ticks (None while unanchored)."""
        cluster = order.cluster
        if not isinstance(cluster, Cluster):
            return None
        return self._orient(cluster.root().water)

    def observe(self, ticks: int) -> None:
        """A trade at ``ticks``: raise the water of every group below it."""
        p = self._orient(ticks)
        if self.unanchored:
            pending, self.unanchored = self.unanchored, []
            for order in pending:
                self._join(order, p)
        waters = self.waters
        if not waters or waters[0] >= p:
            return
        k = bisect_left(waters, p)
        merged = [self.groups.pop(w) for w in waters[:k]]
        del waters[:k]
        existing = self.groups.get(p)
        if existing is not None:
            merged.append(existing)
        # Smaller groups into the largest: each member moves O(log n) times at most.
        big = max(merged, key=lambda g: len(g.abs) + len(g.pct))
        for group in merged:
            if group is big:
                continue
            for entry in group.abs:
                heappush(big.abs, entry)
            for entry in group.pct:
                heappush(big.pct, entry)
            big.alive += group.alive
            group.parent = big
            group.stamp += 1
        big.water = p
        if existing is None:
            self.groups[p] = big
            insort(waters, p)
        else:
            self.groups[p] = big
        self._push_top(big)

    def triggered(self, ticks: int) -> list[tuple[int, Working]]:
        """Take out every order whose stop is at or through ``ticks``; returns them with
        their scaled stop keys (in this side's orientation)."""
        bar = self._orient(ticks) * SCALE
        out: list[tuple[int, Working]] = []
        tops = self.tops
        while tops:
            neg_key, _, stamp, group = tops[0]
            if stamp != group.stamp or group.parent is not None:
                heappop(tops)
                continue
            if -neg_key < bar:
                break
            heappop(tops)
            for heap in (group.abs, group.pct):
                while True:
                    top = group._top(heap)
                    if top is None:
                        break
                    order = top[3]
                    key = order.trail_key(group.water, self.buy)
                    if key < bar:
                        break
                    heappop(heap)
                    out.append((key, order))
                    self.remove(order)
            if group.alive:
                self._push_top(group)
        return out
