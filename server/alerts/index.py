"""A sorted index of constant thresholds on one value stream.

The conditions that compare a stream with a constant (greaterThan, lessThan,
crossing*, channels with constant bounds, and movingUp/Down, whose threshold is
constant between bar closes) can only change state when the stream's value moves
onto or across one of their thresholds. Each of their predicates is built from
``x > k``, ``x < k``, ``x >= k`` and ``x <= k``, so their states depend only on
where ``x`` sits relative to each threshold (below, at, above). Hence:

- On a move from ``a`` to ``b`` only thresholds in the closed range
  ``[min(a, b), max(a, b)]`` can change state; ``between`` finds them by bisection.
- While ``x`` stays strictly inside the gap ``(lo, hi)`` between the two thresholds
  around it, nothing can change. The index keeps that *bracket*, so the usual tick
  costs two float comparisons (``lo < x < hi``) and no search at all. When ``x``
  sits exactly on a threshold the bracket is empty (every move needs a look), and
  ``force()`` empties it on purpose so that the next move takes the slow path.

``floor`` bounds the bracket from below (0 for prices, so a non-positive price can
never take the fast path and is rejected by the caller's slow path).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort
from typing import Generic, TypeVar

E = TypeVar("E")

_INF = math.inf


class ThresholdIndex(Generic[E]):
    __slots__ = ("buckets", "floor", "hi", "keys", "lo")

    def __init__(self, floor: float = -_INF) -> None:
        self.floor = floor
        #: Distinct thresholds, ascending.
        self.keys: list[float] = []
        self.buckets: dict[float, list[E]] = {}
        #: The bracket: while lo < x < hi no entry can change state. Empty (lo > hi)
        #: while the value is unknown or a slow path is forced.
        self.lo = _INF
        self.hi = -_INF

    def __len__(self) -> int:
        return sum(len(b) for b in self.buckets.values())

    def add(self, key: float, entry: E, value: float | None) -> None:
        """Insert ``entry`` at ``key``; ``value`` is the stream's current value (the
        bracket narrows if the new threshold falls inside it)."""
        bucket = self.buckets.get(key)
        if bucket is None:
            self.buckets[key] = [entry]
            insort(self.keys, key)
        else:
            bucket.append(entry)
        if value is not None and self.lo < key < self.hi:
            if key > value:
                self.hi = key
            elif key < value:
                self.lo = key
            else:
                self.lo = self.hi = key

    def discard(self, key: float, entry: E) -> None:
        """Remove ``entry`` from ``key`` (the bracket stays valid: it only gets
        conservative, and the next slow path recomputes it)."""
        bucket = self.buckets.get(key)
        if bucket is None:
            return
        try:
            bucket.remove(entry)
        except ValueError:
            return
        if not bucket:
            del self.buckets[key]
            i = bisect_left(self.keys, key)
            del self.keys[i]

    def between(self, a: float, b: float) -> list[E]:
        """Entries with a threshold in the closed range between ``a`` and ``b``."""
        if a > b:
            a, b = b, a
        keys = self.keys
        i = bisect_left(keys, a)
        j = bisect_right(keys, b, i)
        if i == j:
            return []
        buckets = self.buckets
        if j == i + 1:
            return list(buckets[keys[i]])
        out: list[E] = []
        for k in keys[i:j]:
            out.extend(buckets[k])
        return out

    def entries(self) -> list[E]:
        out: list[E] = []
        for k in self.keys:
            out.extend(self.buckets[k])
        return out

    def rebracket(self, value: float | None) -> None:
        """Recompute the bracket around ``value`` (empty when unknown or on a key)."""
        if value is None:
            self.lo, self.hi = _INF, -_INF
            return
        keys = self.keys
        i = bisect_left(keys, value)
        if i < len(keys) and keys[i] == value:
            self.lo = self.hi = value
            return
        lo = keys[i - 1] if i else self.floor
        self.lo = lo if lo > self.floor else self.floor
        self.hi = keys[i] if i < len(keys) else _INF

    def force(self) -> None:
        """Make the next update take the slow path."""
        self.lo, self.hi = _INF, -_INF
