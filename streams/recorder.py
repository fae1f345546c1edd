"""Record a Polygon stocks feed to a JSONL(.gz) file that the replay server can play.

The recording goes through the real ``polygon.WebSocketClient`` in raw mode, so what
is written is exactly what the feed sent (including fields we do not model), and
the client's reconnect logic keeps the recording going across network drops.
Frames holding only status events (connected, auth, subscription acks) are not
written: they are the conversation, not the market.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from streams.polygon_client import WebSocketClient
from streams.polygon_protocol import decode_frame
from streams.recording import RecordingWriter

log = logging.getLogger(__name__)

#: How long to wait for the client to finish after asking it to close.
CLOSE_GRACE_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class RecordResult:
    path: Path
    frames: int  # data frames written
    events: int  # market events in them that decode cleanly
    rejected: int  # events in them that decode_frame rejects (still written verbatim)
    status_frames: int  # status-only frames, not written
    bytes_written: int  # uncompressed


def client_endpoint(url: str) -> tuple[str, str, bool]:
    """``ws[s]://host:port/market`` -> ``(feed, market, secure)`` for ``WebSocketClient``."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError(f"not a WebSocket URL: {url!r} (expected ws://HOST:PORT/stocks)")
    market = parts.path.strip("/") or "stocks"
    return parts.netloc, market, parts.scheme == "wss"


class _Sink:
    """The raw-mode processor: counts frames and writes the data ones."""

    def __init__(
        self,
        writer: RecordingWriter,
        max_frames: int | None,
        stop: asyncio.Event,
        on_frame: Callable[[int], None] | None = None,
    ):
        self.writer = writer
        self.on_frame = on_frame
        self.max_frames = max_frames
        self.stop = stop
        self.frames = 0
        self.events = 0
        self.rejected = 0
        self.status_frames = 0

    async def __call__(self, message: str | bytes) -> None:
        if self.stop.is_set():
            return  # already buffered when we decided to stop
        decoded = decode_frame(message)
        if decoded.statuses and not decoded.events and not decoded.rejects:
            self.status_frames += 1
            return
        self.writer.write_frame(message)
        self.frames += 1
        self.events += len(decoded.events)
        self.rejected += len(decoded.rejects)
        if self.on_frame is not None:
            self.on_frame(len(decoded.events))
        if self.max_frames is not None and self.frames >= self.max_frames:
            self.stop.set()


async def record(
    url: str,
    api_key: str,
    topics: Sequence[str],
    out: Path,
    *,
    duration_s: float | None = None,
    max_frames: int | None = None,
    max_reconnects: int | None = 5,
    stop: asyncio.Event | None = None,
    append: bool = False,
    on_frame: Callable[[int], None] | None = None,
) -> RecordResult:
    """Record ``topics`` from ``url`` into ``out`` until a limit is reached or ``stop`` is set.

    Without ``duration_s``, ``max_frames`` or ``stop`` it records until cancelled or the
    server closes cleanly. ``on_frame`` is told the number of events of each data frame
    written (progress). Errors of the client (``AuthError``, reconnects exhausted)
    propagate; the file is closed properly in every case.
    """
    feed, market, secure = client_endpoint(url)
    stop = stop if stop is not None else asyncio.Event()
    client = WebSocketClient(
        api_key=api_key,
        feed=feed,
        market=market,
        secure=secure,
        raw=True,
        subscriptions=list(topics),
        max_reconnects=max_reconnects,
    )
    with RecordingWriter(out, append=append) as writer:
        sink = _Sink(writer, max_frames, stop, on_frame)
        await _run_until_stopped(client, sink, stop, duration_s)
        result = RecordResult(
            path=out,
            frames=sink.frames,
            events=sink.events,
            rejected=sink.rejected,
            status_frames=sink.status_frames,
            bytes_written=writer.bytes_written,
        )
    log.info("recorded %d frames (%d events) to %s", result.frames, result.events, out)
    return result


async def _run_until_stopped(
    client: WebSocketClient, sink: _Sink, stop: asyncio.Event, duration_s: float | None
) -> None:
    connection = asyncio.create_task(client.connect(sink), name="recorder-client")
    stopped = asyncio.create_task(stop.wait(), name="recorder-stop")
    try:
        done, _ = await asyncio.wait(
            {connection, stopped}, timeout=duration_s, return_when=asyncio.FIRST_COMPLETED
        )
    except BaseException:
        connection.cancel()
        raise
    finally:
        stopped.cancel()
    if connection in done:
        connection.result()  # the server closed cleanly: return; errors propagate
        return
    stop.set()
    await _close_client(client, connection)


async def _close_client(client: WebSocketClient, connection: asyncio.Task[None]) -> None:
    """Close cleanly (connect() then returns), or cancel the client if it does not."""
    await client.close()
    try:
        await asyncio.wait_for(connection, CLOSE_GRACE_S)
    except TimeoutError:
        log.warning("recorder client did not close in %.0f s; cancelled", CLOSE_GRACE_S)
    except Exception as exc:  # we are done recording: a late error only gets logged
        log.warning("recorder client failed while closing: %r", exc)


__all__ = ["RecordResult", "client_endpoint", "record"]
