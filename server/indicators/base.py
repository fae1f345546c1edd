"""The incremental indicator interface and the pieces the indicators share.

Semantics (those of ``talipp``): an indicator consumes a series of bars.

* ``add(bar)`` appends a bar: the forming bar of a new interval, or a closed bar
  during warm-up.
* ``update(bar)`` replaces the most recent bar (the forming bar got a tick). It does
  not append and leaves no trace: ``add(a); update(b)`` ends in the same state, bit
  for bit, as ``add(b)``.
* ``remove()`` drops the most recent bar. Up to ``max_rollback`` consecutive removes
  are supported (a closed bar revised by a late trade is rolled back with
  ``remove`` k times and re-added); one more raises ``RollbackLimitExceeded``.

How every indicator is built, so that the three operations are O(1) and exact:

* The state is split into the *committed* part (a function of every bar but the
  last) and the *forming* bar. ``update`` recomputes the outputs from the committed
  state and the new bar, so provisional ticks never accumulate into the state.
* ``add`` folds the forming bar into the committed state, pushes a snapshot of the
  previous state onto a bounded history (``deque(maxlen=max_rollback)``), and then
  computes the new forming bar like ``update``. ``remove`` pops the snapshot.
  The state is therefore a pure function of the list of bars: any sequence of
  add/update/remove gives exactly (bit for bit) what a fresh indicator fed the
  resulting list gives.
* Windowed indicators keep the last ``period + max_rollback`` committed inputs in a
  ring, so a rollback still finds the values that left the window. Running window
  sums are updated the way TA-Lib updates them and recomputed exactly
  (``math.fsum``) every ``resum_every(period)`` = max(256, period) commits (at fixed
  positions of the series, to stay a pure function of the bars), so float drift is
  bounded however long the stream runs.
* Rolling maxima/minima use a monotonic deque whose pushes are journaled, so a
  rollback undoes them exactly (``MonotonicWindow``; an undo restores the values the
  push evicted, so it is O(1) amortised and O(period) at worst).
* Constant parts of the next step (Wilder decays, ``avg*(n-1)``) are computed once
  per bar when it is committed, and final transforms of the outputs (RSI's ratio,
  the bands' sqrt) when ``value`` is read, keeping ``update`` minimal.

Memory is O(period + max_rollback) per indicator.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterator
from itertools import islice
from typing import ClassVar

from server.market.timeframes import OHLCV

DEFAULT_MAX_ROLLBACK = 64

#: Window sums are recomputed exactly every this many commits at least (see
#: ``resum_every``).
RESUM_EVERY = 256


def resum_every(period: int) -> int:
    """How often a running window sum of ``period`` values is recomputed exactly.

    Never more often than every ``period`` commits, so the O(period) recomputation
    amortises to O(1) per commit.
    """
    return max(RESUM_EVERY, period)


def tail(ring: deque[float], k: int) -> Iterator[float]:
    """The last ``k`` values of ``ring`` (all of them if it holds fewer)."""
    if k <= 0:
        return iter(())
    return islice(ring, max(0, len(ring) - k), None)


def tail_fsum(ring: deque[float], k: int) -> float:
    """Correctly rounded sum of the last ``k`` values of ``ring``."""
    return math.fsum(tail(ring, k))


class IndicatorStateError(RuntimeError):
    """An indicator was driven incorrectly (a programming error, not bad input)."""


class RollbackLimitExceeded(IndicatorStateError):
    """``remove()`` was called more times in a row than ``max_rollback`` allows."""


class Indicator(ABC):
    """One incremental indicator over a series of bars.

    ``value`` is the latest output (a tuple with one float per name in ``outputs``),
    or ``None`` while no output has a value yet; ``ready`` once every output has one
    (``warmup + 1`` bars added). ``warmup`` is TA-Lib's *lookback*: the number of bars
    consumed before the first value, so a caller wanting a value on the first live bar
    seeds ``warmup`` closed bars first. An indicator whose outputs start at different
    bars (ADX: +DI/-DI before ADX, as in TA-Lib) gives NaN for those not there yet.
    """

    __slots__ = ("_n", "max_rollback", "warmup")

    outputs: ClassVar[tuple[str, ...]]

    def __init__(self, warmup: int, max_rollback: int) -> None:
        if max_rollback < 0:
            raise ValueError(f"max_rollback must be >= 0, got {max_rollback}")
        self.warmup = warmup
        self.max_rollback = max_rollback
        #: Number of bars in the series (the last one may still be forming).
        self._n = 0

    @abstractmethod
    def add(self, bar: OHLCV) -> None:
        """Append ``bar`` to the series."""

    @abstractmethod
    def update(self, bar: OHLCV) -> None:
        """Replace the most recent bar with ``bar``."""

    @abstractmethod
    def remove(self) -> None:
        """Drop the most recent bar (at most ``max_rollback`` times in a row)."""

    @property
    @abstractmethod
    def value(self) -> tuple[float, ...] | None:
        """The outputs for the most recent bar, or ``None`` during warm-up."""

    @property
    def ready(self) -> bool:
        return self._n > self.warmup

    @property
    def count(self) -> int:
        """How many bars the series holds."""
        return self._n

    def __repr__(self) -> str:
        return f"<{type(self).__name__} bars={self._n} value={self.value}>"

    # Errors, kept off the hot paths.

    def _update_empty(self) -> IndicatorStateError:
        return IndicatorStateError(f"{type(self).__name__}.update() called before add()")

    def _remove_error(self) -> IndicatorStateError:
        if self._n == 0:
            return IndicatorStateError(f"{type(self).__name__}.remove(): the series is empty")
        return RollbackLimitExceeded(
            f"{type(self).__name__}.remove(): more than max_rollback={self.max_rollback} "
            "bars removed in a row; recreate the indicator and feed it the bars again"
        )


class MonotonicWindow:
    """Maximum of the last ``size`` pushed values (push negated values for a minimum).

    A monotonic deque: O(1) amortised per push. Each push is journaled (the values it
    evicted), so ``undo()`` restores the previous window exactly; the journal keeps
    the last ``max_rollback`` pushes. An undo costs O(values the push evicted), at
    most O(size). Memory: O(size + max_rollback).
    """

    __slots__ = ("_idx", "_journal", "_next", "_size", "_vals", "best")

    def __init__(self, size: int, max_rollback: int) -> None:
        self._size = size
        self._idx: deque[int] = deque()
        self._vals: deque[float] = deque()
        self._journal: deque[tuple[list[tuple[int, float]] | None, tuple[int, float] | None]]
        self._journal = deque(maxlen=max_rollback)
        self._next = 0
        #: The current extreme (negated for a minimum window); -inf when empty.
        self.best = float("-inf")

    def push(self, value: float) -> None:
        """Push ``value`` (already negated for a minimum window)."""
        size = self._size
        i = self._next
        self._next = i + 1
        if size == 0:
            self._journal.append((None, None))
            return
        idx = self._idx
        vals = self._vals
        evicted: list[tuple[int, float]] | None = None
        while vals and vals[-1] <= value:
            if evicted is None:
                evicted = []
            evicted.append((idx.pop(), vals.pop()))
        idx.append(i)
        vals.append(value)
        expired: tuple[int, float] | None = None
        if idx[0] <= i - size:
            expired = (idx.popleft(), vals.popleft())
        self._journal.append((evicted, expired))
        self.best = vals[0]

    def undo(self) -> None:
        """Undo the last push (the caller guarantees one is journaled)."""
        evicted, expired = self._journal.pop()
        self._next -= 1
        if self._size == 0:
            return
        idx = self._idx
        vals = self._vals
        idx.pop()
        vals.pop()
        if expired is not None:
            idx.appendleft(expired[0])
            vals.appendleft(expired[1])
        if evicted is not None:
            for i, v in reversed(evicted):
                idx.append(i)
                vals.append(v)
        self.best = vals[0] if vals else float("-inf")
