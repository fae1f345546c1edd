"""Recorded Polygon feeds: read them back (optionally looping) and write them.

A recording is JSON Lines, optionally gzip-compressed: one line is one wire frame
exactly as the server sent it (a JSON array of events). Reading decodes every line
with :func:`streams.polygon_protocol.decode_frame`, so a recording gets the same
validation as the live feed; a bad line or event is counted and skipped, never
fatal, because a recording of a real feed may well contain what the real feed sent.

Looping replays the file again with every timestamp and sequence number shifted
forward, so that downstream code (which drops events whose ``q`` does not increase
per symbol and channel) sees one long, consistent feed rather than a rewind.

No asyncio here: the replay server paces frames itself.
"""

from __future__ import annotations

import gzip
import io
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Final

import msgspec

from streams.events import Aggregate, MarketEvent
from streams.polygon_protocol import RejectReason, decode_frame

_GZIP_MAGIC: Final = b"\x1f\x8b"


@dataclass(frozen=True, slots=True)
class RecordedFrame:
    """One wire frame of a recording.

    ``time_ms`` is the latest event time in the frame (``t``, or ``s`` for
    aggregates): the earliest moment the real feed could have sent it. ``line`` is
    the 1-based line number in the file, for error messages.
    """

    events: tuple[MarketEvent, ...]
    time_ms: int
    line: int


@dataclass(slots=True)
class ReadStats:
    """What reading a recording met, cumulated over loops."""

    lines: int = 0
    frames: int = 0
    events: int = 0
    #: Lines that yielded no event at all: bad JSON, only rejected or status events.
    skipped_lines: int = 0
    #: Events dropped by decode_frame's checks, by reason.
    rejects: dict[RejectReason, int] = field(default_factory=dict)
    #: The file ended in the middle of a gzip stream (a recorder that was killed).
    truncated: bool = False
    loops: int = 0


@dataclass(frozen=True, slots=True)
class LoopShift:
    """How far loop ``k`` moves times and sequence numbers: ``k * time_ms`` and ``k * seq``."""

    time_ms: int
    seq: int


def event_time_ms(ev: MarketEvent) -> int:
    """The time an event happened: ``t``, or the window start ``s`` for aggregates."""
    return ev.s if isinstance(ev, Aggregate) else ev.t


def is_gzip(path: Path) -> bool:
    """Detect gzip by its magic bytes, so a misnamed file is still read correctly."""
    with path.open("rb") as fh:
        return fh.read(2) == _GZIP_MAGIC


def _open_lines(path: Path) -> io.BufferedIOBase:
    if is_gzip(path):
        return gzip.GzipFile(path, "rb")
    return path.open("rb")


def _raw_lines(path: Path, stats: ReadStats) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line number, stripped line)`` for every non-blank line."""
    with _open_lines(path) as fh:
        number = 0
        try:
            for raw in fh:
                number += 1
                line = raw.strip()
                if line:
                    yield number, line
        except (EOFError, zlib.error, gzip.BadGzipFile):
            # Whatever was fully written before the writer died is still good data.
            stats.truncated = True


def _decode_line(number: int, line: bytes, stats: ReadStats) -> RecordedFrame | None:
    stats.lines += 1
    decoded = decode_frame(line)
    for reject in decoded.rejects:
        stats.rejects[reject.reason] = stats.rejects.get(reject.reason, 0) + 1
    if not decoded.events:
        stats.skipped_lines += 1
        return None
    events = tuple(decoded.events)
    return RecordedFrame(events, max(event_time_ms(ev) for ev in events), number)


def count_lines(path: Path) -> int:
    """Non-blank lines of a recording (a replay's progress is ``ReadStats.lines`` of
    this); reads the whole file."""
    return sum(1 for _ in _raw_lines(path, ReadStats()))


def read_frames(path: Path, stats: ReadStats | None = None) -> Iterator[RecordedFrame]:
    """Stream the frames of one recording, once, in file order."""
    stats = stats if stats is not None else ReadStats()
    for number, line in _raw_lines(path, stats):
        frame = _decode_line(number, line, stats)
        if frame is not None:
            stats.frames += 1
            stats.events += len(frame.events)
            yield frame


def shift_event(ev: MarketEvent, k: int, shift: LoopShift) -> MarketEvent:
    """``ev`` as it appears on loop ``k`` (loop 0 is the file itself)."""
    if k == 0:
        return ev
    dt = k * shift.time_ms
    if isinstance(ev, Aggregate):
        # Aggregates carry no sequence number; their window moves with time.
        return msgspec.structs.replace(ev, s=ev.s + dt, e=ev.e + dt)
    return msgspec.structs.replace(ev, t=ev.t + dt, q=ev.q + k * shift.seq)


def shift_frame(frame: RecordedFrame, k: int, shift: LoopShift) -> RecordedFrame:
    if k == 0:
        return frame
    events = tuple(shift_event(ev, k, shift) for ev in frame.events)
    return RecordedFrame(events, frame.time_ms + k * shift.time_ms, frame.line)


def _times(ev: MarketEvent) -> tuple[int, int]:
    if isinstance(ev, Aggregate):
        return ev.s, ev.e
    return ev.t, ev.t


@dataclass(slots=True)
class _Extent:
    """Time range and largest ``q`` of one pass, from which the loop shift follows."""

    first_ms: int | None = None
    last_ms: int | None = None
    max_q: int = 0

    def add(self, frame: RecordedFrame) -> None:
        for ev in frame.events:
            lo, hi = _times(ev)
            self.first_ms = lo if self.first_ms is None else min(self.first_ms, lo)
            self.last_ms = hi if self.last_ms is None else max(self.last_ms, hi)
            if not isinstance(ev, Aggregate):
                self.max_q = max(self.max_q, ev.q)

    def shift(self) -> LoopShift:
        assert self.first_ms is not None and self.last_ms is not None
        # One millisecond past the span puts loop k+1's first event strictly after loop
        # k's last one, so the replay's clock never stands still or goes back.
        # ``max_q + 1`` puts every q of loop k+1 above every q of loop k.
        return LoopShift(time_ms=self.last_ms - self.first_ms + 1, seq=self.max_q + 1)


def replay_frames(
    path: Path, *, loop: bool = False, stats: ReadStats | None = None
) -> Iterator[RecordedFrame]:
    """Frames of a recording, forever when ``loop`` (re-reading the file each pass).

    The first pass measures the span and largest ``q``; later passes are shifted by
    that much per loop. A file with no usable frame yields nothing, even when
    looping, rather than spinning.
    """
    stats = stats if stats is not None else ReadStats()
    extent = _Extent()
    for frame in read_frames(path, stats):
        extent.add(frame)
        yield frame
    stats.loops = 1
    if not loop or extent.first_ms is None:
        return
    shift = extent.shift()
    k = 1
    while True:
        for frame in read_frames(path, stats):
            yield shift_frame(frame, k, shift)
        k += 1
        stats.loops = k


def load_events(path: Path) -> list[MarketEvent]:
    """Every event of a recording, in order (tests and small tools)."""
    return [ev for frame in read_frames(path) for ev in frame.events]


class RecordingWriter:
    """Append wire frames to a recording, one per line; gzip when the path ends in .gz.

    Frames are written verbatim (fields we do not model are kept). The file is
    flushed every ``flush_every`` frames or ``flush_interval_s`` seconds, whichever
    comes first, so a killed recorder loses at most that much; a gzip flush is a
    sync flush, which a reader can decompress up to, at a small cost in ratio.
    """

    def __init__(
        self,
        path: Path,
        *,
        append: bool = False,
        flush_every: int = 500,
        flush_interval_s: float = 1.0,
    ) -> None:
        self.path = path
        self.frames_written = 0
        self.bytes_written = 0
        self._flush_every = max(1, flush_every)
        self._flush_interval_s = flush_interval_s
        self._unflushed = 0
        self._last_flush = time.monotonic()
        mode = "ab" if append else "wb"
        self._raw: IO[bytes] = path.open(mode)
        self._out: io.BufferedIOBase | IO[bytes] = self._raw
        if path.suffix == ".gz":
            # A new gzip member per writer: gzip readers concatenate members, so
            # appending to an existing .gz recording stays readable.
            self._out = gzip.GzipFile(fileobj=self._raw, mode="wb", mtime=0)
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def write_frame(self, frame: bytes | str) -> None:
        """Write one frame; it must be one JSON document (newlines are folded)."""
        if self._closed:
            raise ValueError(f"recording {self.path} is closed")
        data = frame.encode() if isinstance(frame, str) else bytes(frame)
        data = data.strip()
        if b"\n" in data or b"\r" in data:
            # Pretty-printed JSON: a raw newline can only be whitespace between tokens,
            # so folding it into a space keeps the document and the one-line framing.
            data = data.replace(b"\r", b" ").replace(b"\n", b" ")
        self._out.write(data + b"\n")
        self.frames_written += 1
        self.bytes_written += len(data) + 1
        self._unflushed += 1
        self._maybe_flush()

    def write_frames(self, frames: Sequence[bytes | str]) -> None:
        for frame in frames:
            self.write_frame(frame)

    def _maybe_flush(self) -> None:
        now = time.monotonic()
        if self._unflushed >= self._flush_every or now - self._last_flush >= self._flush_interval_s:
            self.flush()

    def flush(self) -> None:
        if self._closed:
            return
        self._out.flush()  # GzipFile.flush is a zlib sync flush.
        if self._out is not self._raw:
            self._raw.flush()
        self._unflushed = 0
        self._last_flush = time.monotonic()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._out is not self._raw:
                self._out.close()  # Writes the gzip trailer; does not close _raw.
        finally:
            self._raw.close()

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


__all__ = [
    "LoopShift",
    "ReadStats",
    "RecordedFrame",
    "RecordingWriter",
    "event_time_ms",
    "is_gzip",
    "load_events",
    "read_frames",
    "replay_frames",
    "shift_event",
    "shift_frame",
]
