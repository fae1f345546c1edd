"""Reading, looping and writing recorded Polygon feeds (pure, no event loop)."""

from __future__ import annotations

import gzip
import shutil
from collections import defaultdict
from itertools import islice, pairwise
from pathlib import Path

import msgspec
import pytest

from streams.events import Aggregate, MarketEvent, MinuteAggregate, Quote, Trade
from streams.polygon_protocol import RejectReason, channel_of, encode_events
from streams.recording import (
    LoopShift,
    ReadStats,
    RecordingWriter,
    event_time_ms,
    is_gzip,
    load_events,
    read_frames,
    replay_frames,
    shift_event,
)
from tests.support.data import AAPL_REPLAY_PARTIAL, require

AAPL_FRAMES = 280
AAPL_EVENTS = 644
AAPL_FIRST_MS = 1340285400004
AAPL_LAST_MS = 1340285449086


@pytest.fixture(scope="module")
def aapl() -> Path:
    return require(AAPL_REPLAY_PARTIAL)


#: Recorded times are real epoch milliseconds (2012-06-21 09:30 New York) plus an offset.
T0 = 1_340_285_400_000


def _trade(t: int, q: int, sym: str = "AAPL", p: float = 10.0) -> Trade:
    return Trade(sym=sym, p=p, s=100, t=T0 + t, q=q, x=12, i=str(q), z=3)


def _quote(t: int, q: int, sym: str = "AAPL") -> Quote:
    return Quote(sym=sym, bp=9.99, ap=10.01, t=T0 + t, bs=100, ask_size=200, q=q)


def _bar(s: int) -> MinuteAggregate:
    return MinuteAggregate(sym="AAPL", o=10, h=11, l=9, c=10.5, v=1000, s=T0 + s, e=T0 + s + 60_000)


def _q(ev: MarketEvent) -> int:
    assert isinstance(ev, Trade | Quote)
    return ev.q


def _write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


# --- reading ----------------------------------------------------------------------------


def test_reads_the_shared_recording(aapl: Path) -> None:
    stats = ReadStats()
    frames = list(read_frames(aapl, stats))
    assert len(frames) == AAPL_FRAMES
    assert stats.frames == AAPL_FRAMES and stats.events == AAPL_EVENTS
    assert stats.skipped_lines == 0 and not stats.rejects and not stats.truncated
    assert frames[0].time_ms == AAPL_FIRST_MS and frames[-1].time_ms == AAPL_LAST_MS
    assert [f.line for f in frames[:3]] == [1, 2, 3]
    events = [ev for f in frames for ev in f.events]
    assert sum(isinstance(ev, Trade) for ev in events) == 159
    assert sum(isinstance(ev, Quote) for ev in events) == 485
    # Frame time is the latest event time in the frame, and frames are in time order.
    assert all(f.time_ms == max(event_time_ms(ev) for ev in f.events) for f in frames)
    assert all(a.time_ms <= b.time_ms for a, b in pairwise(frames))


def test_gzip_is_detected_by_magic_bytes_not_name(aapl: Path, tmp_path: Path) -> None:
    misnamed = tmp_path / "feed.jsonl"
    shutil.copy(aapl, misnamed)
    plain = tmp_path / "feed.jsonl.gz"  # plain text despite the name
    plain.write_bytes(gzip.decompress(aapl.read_bytes()))
    assert is_gzip(misnamed) and not is_gzip(plain)
    assert load_events(misnamed) == load_events(aapl) == load_events(plain)


def test_malformed_lines_are_counted_and_skipped(tmp_path: Path) -> None:
    good = encode_events([_trade(1_000, 1)])
    mixed = (
        b'[{"ev":"T","sym":"AAPL","p":-5.0,"s":1,"t":1340285402000,"q":2},'
        + encode_events([_quote(2_000, 3)])[1:]
    )
    path = _write_lines(
        tmp_path / "bad.jsonl",
        [
            good,
            b"not json at all",
            b"",  # blank lines are not lines of data
            b'[{"ev":"status","status":"connected","message":"Connected Successfully"}]',
            mixed,
            b'[{"ev":"T","sym":"AAPL","p":1.0',  # cut off
        ],
    )
    stats = ReadStats()
    frames = list(read_frames(path, stats))
    assert [[type(ev) for ev in f.events] for f in frames] == [[Trade], [Quote]]
    assert [f.line for f in frames] == [1, 5]
    assert stats.lines == 5 and stats.frames == 2 and stats.events == 2
    assert stats.skipped_lines == 3
    assert stats.rejects == {RejectReason.MALFORMED_FRAME: 2, RejectReason.INVALID_PRICE: 1}


def test_truncated_gzip_keeps_what_was_flushed(tmp_path: Path) -> None:
    path = tmp_path / "killed.jsonl.gz"
    writer = RecordingWriter(path, flush_every=1)
    for q in range(1, 6):
        writer.write_frame(encode_events([_trade(1_000 + q, q)]))
    writer.flush()
    data = path.read_bytes()  # a recorder killed now: no gzip trailer
    writer.close()
    path.write_bytes(data)
    stats = ReadStats()
    assert [_q(ev) for f in read_frames(path, stats) for ev in f.events] == [1, 2, 3, 4, 5]
    assert stats.truncated


# --- looping ----------------------------------------------------------------------------


def test_loop_shifts_time_and_sequence_so_both_keep_increasing(aapl: Path) -> None:
    original = list(read_frames(aapl))
    stats = ReadStats()
    frames = list(islice(replay_frames(aapl, loop=True, stats=stats), 3 * AAPL_FRAMES))
    assert stats.loops == 2  # two passes done, the third under way
    span = AAPL_LAST_MS - AAPL_FIRST_MS
    max_q = max(_q(ev) for f in original for ev in f.events)
    shift = LoopShift(time_ms=span + 1, seq=max_q + 1)
    for k in range(3):
        looped = frames[k * AAPL_FRAMES : (k + 1) * AAPL_FRAMES]
        expected = [shift_event(ev, k, shift) for f in original for ev in f.events]
        assert [ev for f in looped for ev in f.events] == expected
    # Time never stands still across a loop boundary, and q keeps increasing per
    # symbol and channel, which is what downstream reorder checks require.
    assert frames[AAPL_FRAMES].time_ms > frames[AAPL_FRAMES - 1].time_ms
    assert all(a.time_ms <= b.time_ms for a, b in pairwise(frames))
    last_q: dict[tuple[str, str], int] = defaultdict(int)
    for f in frames:
        for ev in f.events:
            key = (ev.sym, channel_of(ev))
            assert _q(ev) > last_q[key]
            last_q[key] = _q(ev)


def test_loop_shifts_aggregate_windows_not_sequence(tmp_path: Path) -> None:
    path = _write_lines(
        tmp_path / "bars.jsonl",
        [encode_events([_bar(60_000)]), encode_events([_trade(90_000, 7)])],
    )
    events = [ev for f in islice(replay_frames(path, loop=True), 4) for ev in f.events]
    bar0, trade0, bar1, trade1 = events
    assert isinstance(bar1, Aggregate) and isinstance(bar0, Aggregate)
    # The span runs from the bar's start to its end (120 000): shift 60 001 ms.
    assert (bar1.s - bar0.s, bar1.e - bar0.e) == (60_001, 60_001)
    assert isinstance(trade1, Trade) and isinstance(trade0, Trade)
    assert (trade1.t - trade0.t, trade1.q - trade0.q) == (60_001, 8)
    assert event_time_ms(bar1) == bar1.s


def test_loop_over_a_file_without_events_ends(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "empty.jsonl", [b"garbage", b"[]"])
    assert list(replay_frames(path, loop=True)) == []


def test_shift_uses_msgspec_replace_and_keeps_other_fields() -> None:
    ev = Quote(sym="X", bp=1.0, ap=1.01, t=5, bs=3, ask_size=4, bx=12, ax=11, c=1, i=(604,), q=9)
    shifted = shift_event(ev, 2, LoopShift(time_ms=100, seq=10))
    assert shifted == msgspec.structs.replace(ev, t=205, q=29)
    assert shift_event(ev, 0, LoopShift(time_ms=100, seq=10)) is ev


# --- writing ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["out.jsonl", "out.jsonl.gz"])
def test_writer_round_trip(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    events: list[MarketEvent] = [_trade(1_000, 1), _quote(1_001, 2), _bar(60_000)]
    with RecordingWriter(path) as writer:
        for ev in events:
            writer.write_frame(encode_events([ev]))
        writer.write_frame(
            '[{"ev":"T","sym":"AAPL","p":1.5,"s":1,"t":1340285402000,"q":3,"trfi":7}]'
        )
    assert writer.closed and writer.frames_written == 4
    assert is_gzip(path) == name.endswith(".gz")
    read = load_events(path)
    assert read[:3] == events and read[3] == Trade(sym="AAPL", p=1.5, s=1, t=T0 + 2000, q=3)


def test_writer_folds_pretty_printed_frames_onto_one_line(tmp_path: Path) -> None:
    path = tmp_path / "pretty.jsonl"
    with RecordingWriter(path) as writer:
        writer.write_frame(
            b'[\n  {"ev": "T", "sym": "AAPL", "p": 1.5, "s": 1,\r\n "t": 1340285402000}\n]\n'
        )
    assert path.read_bytes().count(b"\n") == 1
    assert load_events(path) == [Trade(sym="AAPL", p=1.5, s=1, t=T0 + 2000)]


def test_writer_appends_and_gzip_members_concatenate(tmp_path: Path) -> None:
    path = tmp_path / "twice.jsonl.gz"
    with RecordingWriter(path) as writer:
        writer.write_frame(encode_events([_trade(1_000, 1)]))
    with RecordingWriter(path, append=True) as writer:
        writer.write_frame(encode_events([_trade(2_000, 2)]))
    assert [_q(ev) for ev in load_events(path)] == [1, 2]
    with RecordingWriter(path) as writer:  # not appending: replaces
        writer.write_frame(encode_events([_trade(3_000, 3)]))
    assert [_q(ev) for ev in load_events(path)] == [3]


def test_writer_flushes_so_a_reader_sees_frames_before_close(tmp_path: Path) -> None:
    path = tmp_path / "live.jsonl"
    writer = RecordingWriter(path, flush_every=2)
    writer.write_frame(encode_events([_trade(1_000, 1)]))
    writer.write_frame(encode_events([_trade(1_001, 2)]))
    writer.write_frame(encode_events([_trade(1_002, 3)]))
    assert len(load_events(path)) == 2  # the third waits for the next flush
    writer.close()
    assert len(load_events(path)) == 3
    with pytest.raises(ValueError, match="closed"):
        writer.write_frame(b"[]")
    writer.close()  # idempotent
