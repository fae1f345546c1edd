"""Live subscriber streams and WebSockets of this process, for metrics and tests.

Each stream registers its mailbox while it runs, so the process can report how
much is queued right now and how much was conflated or dropped, without reaching
into generators. ``SocketCounts`` counts the sockets themselves, signed in or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class _Box(Protocol):
    def __len__(self) -> int: ...


@dataclass(frozen=True, slots=True)
class StreamTotals:
    active: int
    queued: int
    conflated: int
    dropped: int


class StreamRegistry:
    def __init__(self) -> None:
        self._boxes: set[_Box] = set()
        # Totals of streams that already ended, so the counters never go backwards.
        self._ended_conflated = 0
        self._ended_dropped = 0

    def add(self, box: _Box) -> None:
        self._boxes.add(box)

    def remove(self, box: _Box) -> None:
        if box in self._boxes:
            self._boxes.discard(box)
            self._ended_conflated += getattr(box, "conflated", 0)
            self._ended_dropped += getattr(box, "dropped", 0)

    def totals(self) -> StreamTotals:
        boxes = list(self._boxes)
        return StreamTotals(
            active=len(boxes),
            queued=sum(len(b) for b in boxes),
            conflated=self._ended_conflated + sum(getattr(b, "conflated", 0) for b in boxes),
            dropped=self._ended_dropped + sum(getattr(b, "dropped", 0) for b in boxes),
        )


class SocketCounts:
    """Every graphql-transport-ws socket of this process: anonymous ones and those
    not yet initialised included (``Connections`` knows only signed-in ones)."""

    __slots__ = ("open", "opened")

    def __init__(self) -> None:
        self.open = 0
        #: Over the process's life.
        self.opened = 0
