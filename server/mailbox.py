"""Per-subscriber mailboxes: where backpressure stops.

The feed puts into a mailbox and never waits; the subscriber drains it at its own
pace. Two kinds, because the two kinds of stream need different guarantees:

* ``ConflatingMailbox`` keeps only the newest value per key (per symbol for quotes).
  A slow reader gets fresh data, never a backlog, and memory is bounded by the
  number of keys.
* ``DroppingQueue`` keeps every item up to a bound and then drops the *oldest*,
  counting the drops so the reader can be told how many it missed.

Both are pure: instead of an asyncio event they call ``notify`` when they go from
empty to non-empty, so the I/O layer decides how to wake the reader.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def _nothing() -> None:
    return None


class ConflatingMailbox(Generic[K, V]):
    __slots__ = ("_items", "_notify", "conflated")

    def __init__(self, notify: Callable[[], None] = _nothing) -> None:
        self._items: dict[K, V] = {}
        self._notify = notify
        #: How many values were replaced before the reader saw them.
        self.conflated = 0

    def put(self, key: K, value: V) -> None:
        items = self._items
        if key in items:
            # Assigning keeps the key's place, so symbols are served in first-come order.
            self.conflated += 1
            items[key] = value
            return
        items[key] = value
        if len(items) == 1:
            self._notify()

    def put_if_absent(self, key: K, value: V) -> None:
        """Queue ``value`` unless a (newer) value for ``key`` is already waiting."""
        if key not in self._items:
            self.put(key, value)

    def drain(self) -> list[V]:
        if not self._items:
            return []
        values = list(self._items.values())
        self._items = {}
        return values

    def __len__(self) -> int:
        return len(self._items)


class DroppingQueue(Generic[V]):
    __slots__ = ("_items", "_notify", "_pending_drops", "dropped")

    def __init__(self, maxlen: int, notify: Callable[[], None] = _nothing) -> None:
        if maxlen < 1:
            raise ValueError("maxlen must be at least 1")
        self._items: deque[V] = deque(maxlen=maxlen)
        self._notify = notify
        self._pending_drops = 0
        #: Total items dropped over the queue's life.
        self.dropped = 0

    @property
    def maxlen(self) -> int:
        return self._items.maxlen or 0

    def put(self, value: V) -> None:
        items = self._items
        if len(items) == items.maxlen:
            # deque(maxlen) discards the oldest on append; we only count it.
            self.dropped += 1
            self._pending_drops += 1
        items.append(value)
        if len(items) == 1:
            self._notify()

    def drain(self) -> tuple[list[V], int]:
        """Everything queued, oldest first, and how many were dropped before them."""
        values = list(self._items)
        self._items.clear()
        drops, self._pending_drops = self._pending_drops, 0
        return values, drops

    def __len__(self) -> int:
        return len(self._items)
