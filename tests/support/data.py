"""Where the shared recorded market data lives (never copied into this repo)."""

from __future__ import annotations

from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
AMZN_REPLAY = SHARED_DATA / "polygon-replay-AMZN-2012-06-21.jsonl.gz"
GOOG_REPLAY = SHARED_DATA / "polygon-replay-GOOG-2012-06-21.jsonl.gz"
AAPL_REPLAY_PARTIAL = SHARED_DATA / "polygon-replay-AAPL-2012-06-21-partial.jsonl.gz"


def require(path: Path) -> Path:
    """The shared data is part of the test environment: its absence is a failure."""
    if not path.exists():
        raise FileNotFoundError(f"shared test data missing: {path} (expected ../shared/data)")
    return path


def merged_recording(out: Path, *paths: Path) -> Path:
    """One recording of several files, frames interleaved by time as one feed would
    deliver them (written to ``out``, under a test's temporary directory)."""
    import heapq

    from streams.polygon_protocol import encode_events
    from streams.recording import RecordingWriter, read_frames

    streams = [
        ((f.time_ms, i, f.line, f.events) for f in read_frames(require(p)))
        for i, p in enumerate(paths)
    ]
    with RecordingWriter(out) as writer:
        for _, _, _, events in heapq.merge(*streams):
            writer.write_frame(encode_events(events))
    return out
