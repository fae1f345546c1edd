"""A local server that speaks Polygon's stocks WebSocket protocol.

It serves either a recorded feed (:class:`RecordingSource`) or the simulated market
(:class:`SimulatedSource`) to any Polygon client, in particular the real
``polygon.WebSocketClient`` pointed at it with ``feed="127.0.0.1:PORT", secure=False``.

Protocol, as Polygon speaks it:

* on connect: ``[{"ev":"status","status":"connected","message":"Connected Successfully"}]``;
* ``{"action":"auth","params":KEY}`` -> ``auth_success`` / ``authenticated``, or
  ``auth_failed`` / ``authentication failed`` followed by a close (1008);
* ``{"action":"subscribe","params":"T.AMZN,Q.*"}`` -> one ``success`` status per topic,
  ``subscribed to: T.AMZN``; ``unsubscribe`` likewise (``unsubscribed to: ...``);
* subscribing before authenticating -> ``error`` / ``not authorized``;
* every server frame is a JSON array; a connection only receives the events that
  match its subscriptions, and no frame at all when nothing matches.

Playback semantics:

* The source advances only while at least one authenticated connection is subscribed
  to something. So a client that connects and subscribes gets a recording from its
  start, and a client that reconnects continues where the replay was (a recorded
  frame taken from the source while nobody was subscribed is held for the next
  subscriber). The simulated market is live: it just stops generating meanwhile.
* Pacing is the source's: a recording at real time x ``speed`` by event-time deltas,
  or as fast as possible (``speed=None``: no sleeps, but the pump yields to the loop
  every frame and waits for each connection's send buffer); the simulated market at
  its rate by wall clock, stamping events with the current time.
* Every connection has a bounded outbound buffer (``max_buffered_bytes``, plus the
  websockets write buffer). The pump waits for room, so memory cannot grow with a
  slow client; a client that makes it wait longer than ``slow_consumer_timeout_s``
  is disconnected, as a real feed does, rather than stall everyone (paced sources:
  the simulated market and paced replays). A replay at max speed has no pace to keep:
  it waits for its slowest client as long as it takes.
* When a non-looping recording ends, connections stay open and idle (a live feed
  that went quiet) and :attr:`PolygonProtocolServer.finished` is set.

Status frames (acks) go through the same ordered buffer as data, so everything
queued for a topic before an ``unsubscribed to`` ack arrives before it, and no data
of a topic arrives before its ``subscribed to`` ack.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import Final, Protocol
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from streams.events import MarketEvent, Quote, Trade
from streams.polygon_protocol import channel_of, encode_events, parse_topics, status_frame
from streams.recording import ReadStats, RecordedFrame, replay_frames
from streams.simulated_market import SimulatedMarket

log = logging.getLogger(__name__)

MARKET_PATH: Final = "/stocks"
MSG_CONNECTED: Final = "Connected Successfully"
MSG_AUTHENTICATED: Final = "authenticated"
MSG_AUTH_FAILED: Final = "authentication failed"
MSG_NOT_AUTHORIZED: Final = "not authorized"
MSG_MAX_CONNECTIONS: Final = (
    "Maximum number of websocket connections exceeded. You have reached the connection "
    "limit for your account. Please contact support to increase your limit."
)
CLOSE_POLICY: Final = 1008
#: A paced source's client that makes the pump wait this long is disconnected.
DEFAULT_SLOW_CONSUMER_TIMEOUT_S: Final = 10.0
#: At max speed, the pump yields to the event loop every this many frames.
UNPACED_YIELD_EVERY: Final = 32

#: What a subscription may name for the simulated market to start quoting it (the same
#: shape as ``server.market.symbols.SYMBOL_PATTERN``; streams does not depend on server).
_SIM_SYMBOL: Final = re.compile(r"^[A-Z][A-Z0-9.\-]{0,9}$")


# --- faults ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Faults:
    """Misbehaviour to inject, to test a client's resilience.

    * ``drop_after_frames``: abort the TCP connection (no close frame) after this many
      data frames were sent on it; every connection, or only the first one to get
      there when ``drop_every_connection`` is false.
    * ``auth_failures``: the first N auth attempts on this server fail.
    * ``garbage_every``: every Nth data frame sent on a connection is preceded by a
      malformed frame; the kinds rotate through :class:`GarbageKind`.
    * ``max_connections_evict``: when a client authenticates, every other
      authenticated connection gets a ``max_connections`` status and is closed, as
      Polygon does when a key's connection limit (one) is exceeded.
    """

    drop_after_frames: int | None = None
    drop_every_connection: bool = True
    auth_failures: int = 0
    garbage_every: int | None = None
    max_connections_evict: bool = False

    def __post_init__(self) -> None:
        if self.drop_after_frames is not None and self.drop_after_frames < 1:
            raise ValueError("drop_after_frames must be at least 1")
        if self.garbage_every is not None and self.garbage_every < 1:
            raise ValueError("garbage_every must be at least 1")
        if self.auth_failures < 0:
            raise ValueError("auth_failures must not be negative")


class GarbageKind(StrEnum):
    """Malformed frames ``Faults.garbage_every`` injects, in rotation order."""

    BAD_JSON = "bad_json"
    NAN_PRICE = "nan_price"
    NEGATIVE_PRICE = "negative_price"
    CROSSED_QUOTE = "crossed_quote"
    UNKNOWN_EVENT = "unknown_event"
    MISSING_FIELD = "missing_field"


GARBAGE_ROTATION: Final = tuple(GarbageKind)


def garbage_frame(kind: GarbageKind, symbol: str, t_ms: int) -> bytes:
    """One malformed frame about ``symbol``, the way a broken upstream might send it."""
    sym = json.dumps(symbol)
    if kind is GarbageKind.BAD_JSON:
        return f'[{{"ev":"T","sym":{sym},"p":'.encode()  # cut off mid-event
    if kind is GarbageKind.NAN_PRICE:
        # Literal NaN: not JSON, but what a careless encoder emits (Python's json does).
        return (
            f'[{{"ev":"T","sym":{sym},"x":4,"i":"nan","z":3,"p":NaN,"s":100,"t":{t_ms}}}]'
        ).encode()
    if kind is GarbageKind.NEGATIVE_PRICE:
        return encode_events([Trade(sym=symbol, p=-1.23, s=100, t=t_ms, x=4, i="neg", z=3)])
    if kind is GarbageKind.CROSSED_QUOTE:
        return encode_events(
            [Quote(sym=symbol, bp=101.05, ap=101.0, t=t_ms, bs=100, ask_size=100, bx=12, ax=12)]
        )
    if kind is GarbageKind.UNKNOWN_EVENT:
        return f'[{{"ev":"ZZ","sym":{sym},"t":{t_ms}}}]'.encode()
    return f'[{{"ev":"T","sym":{sym},"x":4,"i":"nop","z":3,"s":100,"t":{t_ms}}}]'.encode()


# --- sources -----------------------------------------------------------------------------


class FrameSource(Protocol):
    """Where the server's frames come from, and how fast."""

    #: Hold a frame taken while nobody was subscribed for the next subscriber
    #: (a recording continues); a live source just drops it.
    hold_when_paused: bool
    #: No pacing at all: the server yields to the loop every few frames itself.
    unpaced: bool

    async def next_frame(self) -> Sequence[MarketEvent] | None:
        """The next frame, once it is due; ``None`` when the source has ended."""
        ...

    def pause(self) -> None:
        """Nobody is subscribed: the next frame restarts the pacing clock."""
        ...

    def on_subscribe(self, channel: str, symbol: str) -> None:
        """A client subscribed to ``channel.symbol`` (``symbol`` may be ``*``)."""
        ...


class RecordingSource:
    """Frames of a recording at ``speed`` x real time (``None``: as fast as possible).

    Pacing is anchored: frame ``n`` is due at ``anchor + (t_n - t_anchor) / speed``, so
    sleep overshoots do not accumulate; a pause moves the anchor to the next frame.
    """

    hold_when_paused = True

    def __init__(
        self,
        path: Path,
        *,
        speed: float | None = 1.0,
        loop: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if speed is not None and not speed > 0.0:
            raise ValueError(f"speed must be positive or None, got {speed!r}")
        if not path.is_file():
            raise FileNotFoundError(f"recording not found: {path}")
        self.path = path
        self.speed = speed
        self.loop = loop
        self.stats = ReadStats()
        self.unpaced = speed is None
        self._clock = clock
        self._frames: Iterator[RecordedFrame] = replay_frames(path, loop=loop, stats=self.stats)
        self._anchor: tuple[float, int] | None = None

    async def next_frame(self) -> Sequence[MarketEvent] | None:
        frame = next(self._frames, None)
        if frame is None:
            return None
        if self.speed is not None:
            await self._pace(frame.time_ms, self.speed)
        return frame.events

    async def _pace(self, time_ms: int, speed: float) -> None:
        now = self._clock()
        if self._anchor is None:
            self._anchor = (now, time_ms)
            return
        wall0, t0 = self._anchor
        delay = wall0 + (time_ms - t0) / 1000.0 / speed - now
        if delay > 0:
            await asyncio.sleep(delay)

    def pause(self) -> None:
        self._anchor = None

    def on_subscribe(self, channel: str, symbol: str) -> None:
        """A recording has what it has."""


class SimulatedSource:
    """The simulated market, paced by wall clock; events are stamped with the time now.

    Subscribing to ``T.XYZ`` or ``Q.XYZ`` for a symbol it does not have yet adds it
    (up to ``max_symbols``, since the event rate grows with every symbol).
    """

    hold_when_paused = False
    unpaced = False
    #: Falling further behind than this (an overloaded loop) drops the backlog rather
    #: than firing it all at once.
    MAX_LAG_S: Final = 1.0

    def __init__(
        self,
        market: SimulatedMarket,
        *,
        max_symbols: int = 500,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.market = market
        self.max_symbols = max_symbols
        self._clock = clock
        self._wall_ms = wall_ms
        self._due: float | None = None
        self._last_ms = 0

    async def next_frame(self) -> Sequence[MarketEvent] | None:
        now = self._clock()
        if self._due is None or now - self._due > self.MAX_LAG_S:
            self._due = now
        self._due += self.market.next_delay()
        if self._due > now:
            await asyncio.sleep(self._due - now)
        # Never let the wall clock (NTP steps) make time go back within the feed.
        self._last_ms = max(self._last_ms, self._wall_ms())
        return self.market.frame(self._last_ms)

    def pause(self) -> None:
        self._due = None

    def on_subscribe(self, channel: str, symbol: str) -> None:
        if channel not in ("T", "Q") or symbol in self.market:
            return
        if not _SIM_SYMBOL.match(symbol):
            return
        if len(self.market.symbols) >= self.max_symbols:
            log.warning("simulated market full: not adding %s", symbol)
            return
        self.market.add_symbol(symbol)


# --- connections -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Outgoing:
    data: bytes
    events: int = 0  # 0 for a status frame
    symbol: str = ""  # the first event's symbol, for garbage about the same symbol
    time_ms: int = 0
    close_code: int | None = None  # set: close the connection after sending ``data``
    close_reason: str = ""


class _Client:
    """One connection's state and its bounded, ordered outbound buffer."""

    def __init__(self, ws: ServerConnection, number: int, max_buffered_bytes: int) -> None:
        self.ws = ws
        self.number = number
        self.authed = False
        self.closing = False  # no more data: being evicted, dropped or closed
        self.subs: dict[str, set[str]] = {}
        self.data_frames_sent = 0
        self.garbage_sent = 0
        self.buffered = 0
        self._limit = max_buffered_bytes
        self._queue: deque[_Outgoing] = deque()
        self._has_items = asyncio.Event()
        self._has_space = asyncio.Event()
        self._has_space.set()

    @property
    def subscribed(self) -> bool:
        return self.authed and not self.closing and any(self.subs.values())

    def select(self, events: Sequence[MarketEvent]) -> list[MarketEvent]:
        """The events of a frame this connection subscribed to."""
        if not self.subscribed:
            return []
        subs = self.subs
        out: list[MarketEvent] = []
        for ev in events:
            symbols = subs.get(channel_of(ev))
            if symbols and ("*" in symbols or ev.sym in symbols):
                out.append(ev)
        return out

    def write_buffer_size(self) -> int:
        transport = self.ws.transport
        return 0 if transport is None else transport.get_write_buffer_size()

    async def put(self, item: _Outgoing, timeout_s: float | None) -> bool:
        """Queue ``item``, waiting for room; ``False`` if closed or still full after timeout.

        One item may exceed the limit (frames are never split), so the buffer holds at
        most ``max_buffered_bytes`` plus one frame.
        """
        try:
            async with asyncio.timeout(timeout_s):
                while self.buffered >= self._limit and not self.closing:
                    self._has_space.clear()
                    await self._has_space.wait()
        except TimeoutError:
            return False
        if self.closing:
            return False
        self._append(item)
        return True

    def put_final(self, item: _Outgoing) -> None:
        """Queue a last status and close, regardless of room: it is bounded (one item)."""
        self.closing = True
        self._has_space.set()  # wake a pump waiting for room: it will see ``closing``
        self._append(item)

    def _append(self, item: _Outgoing) -> None:
        self._queue.append(item)
        self.buffered += len(item.data)
        self._has_items.set()

    async def get(self) -> _Outgoing:
        while not self._queue:
            self._has_items.clear()
            await self._has_items.wait()
        item = self._queue.popleft()
        self.buffered -= len(item.data)
        if self.buffered < self._limit:
            self._has_space.set()
        return item

    def shut(self) -> None:
        """The connection is gone: release anyone waiting for room."""
        self.closing = True
        self._queue.clear()
        self.buffered = 0
        self._has_space.set()


# --- the server --------------------------------------------------------------------------


class PolygonProtocolServer:
    """Serve ``source`` to Polygon clients at :attr:`url` (``ws://HOST:PORT/stocks``).

    ``api_keys``: the keys accepted, or ``None`` to accept any key.
    """

    def __init__(
        self,
        source: FrameSource,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Faults | None = None,
        api_keys: Collection[str] | None = None,
        max_buffered_bytes: int = 1 << 20,
        slow_consumer_timeout_s: float | None = None,
    ) -> None:
        self.source = source
        self.host = host
        self.faults = faults if faults is not None else Faults()
        self.api_keys = frozenset(api_keys) if api_keys is not None else None
        self.max_buffered_bytes = max_buffered_bytes
        self.slow_consumer_timeout_s = slow_consumer_timeout_s
        #: Set when a non-looping recording has been fully played.
        self.finished = asyncio.Event()
        #: Set while playback is paused at ``pause_at`` (tests inject input there).
        self.paused = asyncio.Event()
        self._pause_at: int | None = None
        self._skip_to: int | None = None
        self._resumed = asyncio.Event()
        self.frames_skipped = 0
        # Counters.
        self.connections = 0
        self.frames_read = 0  # frames taken from the source: the playback position
        self.frames_sent = 0  # data frames sent, all connections
        self.events_sent = 0
        self.garbage_sent = 0
        self.connections_dropped = 0  # by the drop fault
        self.slow_consumers_dropped = 0
        self.evictions = 0
        self.backpressure_waits = 0  # times the pump found a connection's buffer full
        self._requested_port = port
        self._port: int | None = None
        self._server: Server | None = None
        self._pump_task: asyncio.Task[None] | None = None
        self._clients: dict[int, _Client] = {}
        self._playing = asyncio.Event()
        self._auth_failures_left = self.faults.auth_failures
        self._drop_used = False

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> PolygonProtocolServer:
        if self._server is not None:
            return self
        self._server = await serve(
            self._handle,
            self.host,
            self._requested_port,
            process_request=_only_market_path,
            compression=None,  # market data frames are small; deflate costs more than it saves
            max_size=64 * 1024,  # clients only send short control messages
            close_timeout=2.0,
        )
        self._port = self._server.sockets[0].getsockname()[1]
        self._pump_task = asyncio.create_task(self._pump(), name="polygon-server-pump")
        self._pump_task.add_done_callback(_log_crash)
        log.info("polygon protocol server listening on %s", self.url)
        return self

    async def close(self) -> None:
        if self._pump_task is not None:
            self._pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump_task
            self._pump_task = None
        if self._server is not None:
            server, self._server = self._server, None
            server.close(close_connections=True)
            await server.wait_closed()

    async def __aenter__(self) -> PolygonProtocolServer:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- properties --------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("server not started")
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}{MARKET_PATH}"

    @property
    def feed(self) -> str:
        """``host:port``, as ``polygon.WebSocketClient(feed=...)`` wants it."""
        return self.url.removeprefix("ws://").removesuffix(MARKET_PATH)

    @property
    def open_connections(self) -> int:
        return len(self._clients)

    def subscribed_topics(self) -> set[str]:
        """Every topic some open, authenticated connection is subscribed to (``Q.AMZN``)."""
        return {
            f"{channel}.{symbol}"
            for client in self._clients.values()
            if client.authed and not client.closing
            for channel, symbols in client.subs.items()
            for symbol in symbols
        }

    @property
    def playing(self) -> bool:
        """Whether some connection is subscribed, so the source advances."""
        return self._playing.is_set()

    def buffered_bytes(self) -> int:
        """Bytes waiting to be sent, over all connections: our buffers plus the transports'."""
        return sum(c.buffered + c.write_buffer_size() for c in self._clients.values())

    # --- test control ------------------------------------------------------------------

    def pause_at(self, t_ms: int) -> None:
        """Hold playback before the first frame stamped at or after ``t_ms`` (``paused``
        is set then) until ``resume``: tests read or inject at a known position."""
        self._pause_at = t_ms

    def resume(self, until_ms: int | None = None, *, skip_to_ms: int | None = None) -> None:
        """Go on playing (until ``until_ms``, when given, as ``pause_at``). With
        ``skip_to_ms``, the frames before it are dropped first, as a live feed goes on
        while nobody listens: what a server that was down never gets."""
        self._pause_at = until_ms
        self._skip_to = skip_to_ms
        self.paused.clear()
        self._resumed.set()

    async def inject(self, data: bytes | str) -> int:
        """Send one raw frame, as it is, to every subscribed connection, in order with
        the data already queued; returns how many got it. Fault injection for tests: a
        frame may hold anything a broken upstream could send."""
        raw = data.encode() if isinstance(data, str) else data
        sent = 0
        for client in tuple(self._clients.values()):
            if client.subscribed and await client.put(_Outgoing(raw), self.slow_consumer_timeout_s):
                sent += 1
        return sent

    # --- playback ----------------------------------------------------------------------

    async def _pump(self) -> None:
        source = self.source
        while True:
            if not self._playing.is_set():
                source.pause()
                await self._playing.wait()
            frame = await source.next_frame()
            if frame is None:
                self.finished.set()
                log.info("source finished after %d frames; connections stay open", self.frames_read)
                return
            self.frames_read += 1
            if frame and self._pause_at is not None and _time_of(frame[0]) >= self._pause_at:
                self._resumed.clear()
                self.paused.set()
                await self._resumed.wait()
            if frame and self._skip_to is not None:
                if _time_of(frame[0]) < self._skip_to:
                    self.frames_skipped += 1
                    continue
                self._skip_to = None
            if not self._playing.is_set():
                # Everyone left while this frame was being paced.
                source.pause()
                if not source.hold_when_paused:
                    continue
                await self._playing.wait()
            if frame:
                await self._broadcast(frame)
            if source.unpaced and self.frames_read % UNPACED_YIELD_EVERY == 0:
                # Let connections read and write. Not after every frame: a loop
                # iteration per frame would cost more than the frame itself, and the
                # buffers' limits already keep memory bounded.
                await asyncio.sleep(0)

    async def _broadcast(self, events: Sequence[MarketEvent]) -> None:
        whole: bytes | None = None
        for client in tuple(self._clients.values()):
            selected = client.select(events)
            if not selected:
                continue
            if len(selected) == len(events):
                whole = whole if whole is not None else encode_events(events)
                data = whole
            else:
                data = encode_events(selected)
            first = selected[0]
            item = _Outgoing(data, len(selected), first.sym, _time_of(first))
            if client.buffered >= self.max_buffered_bytes:
                self.backpressure_waits += 1
            if not await client.put(item, self.slow_consumer_timeout_s) and not client.closing:
                self._drop_slow_consumer(client)

    def _drop_slow_consumer(self, client: _Client) -> None:
        # Its buffers are full, so a close handshake could not get through: abort.
        log.warning("connection %d is a slow consumer: disconnecting", client.number)
        self.slow_consumers_dropped += 1
        client.shut()
        self._update_playing()
        _abort(client.ws)

    def _update_playing(self) -> None:
        if any(c.subscribed for c in self._clients.values()):
            self._playing.set()
        else:
            self._playing.clear()

    # --- connections -------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        client = _Client(ws, self.connections, self.max_buffered_bytes)
        self._clients[client.number] = client
        writer = asyncio.create_task(
            self._write_loop(client), name=f"polygon-writer-{client.number}"
        )
        try:
            await self._reply(client, "connected", MSG_CONNECTED)
            async for message in ws:
                await self._on_message(client, message)
        except ConnectionClosed:
            pass
        finally:
            client.shut()
            del self._clients[client.number]
            self._update_playing()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    async def _write_loop(self, client: _Client) -> None:
        ws = client.ws
        try:
            while True:
                item = await client.get()
                if item.events:
                    await self._maybe_send_garbage(client, item)
                # Text frames, as Polygon sends; the bytes are UTF-8 JSON already.
                await ws.send(item.data, text=True)
                if item.close_code is not None:
                    await ws.close(item.close_code, item.close_reason)
                    return
                if item.events:
                    client.data_frames_sent += 1
                    self.frames_sent += 1
                    self.events_sent += item.events
                    if self._should_drop(client):
                        log.info("fault: dropping connection %d", client.number)
                        self.connections_dropped += 1
                        client.shut()
                        self._update_playing()
                        _abort(ws)
                        return
        except ConnectionClosed:
            return

    async def _maybe_send_garbage(self, client: _Client, item: _Outgoing) -> None:
        every = self.faults.garbage_every
        if every is None or (client.data_frames_sent + 1) % every:
            return
        kind = GARBAGE_ROTATION[client.garbage_sent % len(GARBAGE_ROTATION)]
        client.garbage_sent += 1
        self.garbage_sent += 1
        await client.ws.send(garbage_frame(kind, item.symbol, item.time_ms), text=True)

    def _should_drop(self, client: _Client) -> bool:
        n = self.faults.drop_after_frames
        if n is None or client.data_frames_sent < n:
            return False
        if self.faults.drop_every_connection:
            return True
        if self._drop_used:
            return False
        self._drop_used = True
        return True

    async def _reply(self, client: _Client, status: str, message: str) -> None:
        item = _Outgoing(status_frame(status, message))
        if not await client.put(item, self.slow_consumer_timeout_s) and not client.closing:
            self._drop_slow_consumer(client)

    async def _on_message(self, client: _Client, message: str | bytes) -> None:
        try:
            msg = json.loads(message)
        except ValueError:
            await self._reply(client, "error", "invalid JSON")
            return
        if not isinstance(msg, dict):
            await self._reply(client, "error", "invalid message")
            return
        action, params = msg.get("action"), msg.get("params")
        if not isinstance(params, str):
            params = ""
        if action == "auth":
            await self._auth(client, params)
        elif action in ("subscribe", "unsubscribe"):
            if not client.authed:
                await self._reply(client, "error", MSG_NOT_AUTHORIZED)
                return
            topics = parse_topics(params)
            if action == "subscribe":
                await self._subscribe(client, topics)
            else:
                await self._unsubscribe(client, topics)
        else:
            await self._reply(client, "error", f"unknown action: {action}")

    async def _auth(self, client: _Client, key: str) -> None:
        if client.authed:
            await self._reply(client, "auth_success", MSG_AUTHENTICATED)
            return
        if self._auth_failures_left > 0:
            self._auth_failures_left -= 1
            ok = False
        else:
            ok = self.api_keys is None or key in self.api_keys
        if not ok:
            client.put_final(
                _Outgoing(
                    status_frame("auth_failed", MSG_AUTH_FAILED),
                    close_code=CLOSE_POLICY,
                    close_reason=MSG_AUTH_FAILED,
                )
            )
            return
        if self.faults.max_connections_evict:
            self._evict_all_but(client)
        client.authed = True
        await self._reply(client, "auth_success", MSG_AUTHENTICATED)

    def _evict_all_but(self, newest: _Client) -> None:
        for other in self._clients.values():
            if other is newest or not other.authed or other.closing:
                continue
            log.info("max connections: evicting connection %d", other.number)
            self.evictions += 1
            other.put_final(
                _Outgoing(
                    status_frame("max_connections", MSG_MAX_CONNECTIONS),
                    close_code=CLOSE_POLICY,
                    close_reason="max_connections",
                )
            )
        self._update_playing()

    async def _subscribe(self, client: _Client, topics: Iterable[tuple[str, str]]) -> None:
        accepted: list[tuple[str, str]] = []
        for channel, symbol in topics:
            topic = f"{channel}.{symbol}"
            if not channel or not symbol:
                await self._reply(client, "error", f"invalid subscription: {topic}")
                continue
            await self._reply(client, "success", f"subscribed to: {topic}")
            accepted.append((channel, symbol))
        if client.closing:
            return
        # Acks first, so no data of a topic precedes its ack; then all topics of the
        # message at once, so a replay starting now serves them all from the same frame.
        for channel, symbol in accepted:
            client.subs.setdefault(channel, set()).add(symbol)
            self.source.on_subscribe(channel, symbol)
        self._update_playing()

    async def _unsubscribe(self, client: _Client, topics: Iterable[tuple[str, str]]) -> None:
        topics = list(topics)
        # Remove first, so everything already queued for a topic precedes its ack.
        for channel, symbol in topics:
            client.subs.get(channel, set()).discard(symbol)
        self._update_playing()
        for channel, symbol in topics:
            await self._reply(client, "success", f"unsubscribed to: {channel}.{symbol}")


def _time_of(ev: MarketEvent) -> int:
    return ev.t if isinstance(ev, (Trade, Quote)) else ev.s


def _abort(ws: ServerConnection) -> None:
    transport = ws.transport
    if transport is not None:
        transport.abort()


def _only_market_path(connection: ServerConnection, request: Request) -> Response | None:
    if urlsplit(request.path).path.rstrip("/") == MARKET_PATH:
        return None
    return connection.respond(HTTPStatus.NOT_FOUND, f"only {MARKET_PATH} is served here\n")


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("polygon server pump crashed", exc_info=task.exception())


async def start_simulated_server(
    symbols: Iterable[str],
    seed: int | None,
    rate: float,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    faults: Faults | None = None,
    api_keys: Collection[str] | None = None,
) -> PolygonProtocolServer:
    """Start a server for the simulated market; ``rate`` is events/s per symbol."""
    source = SimulatedSource(SimulatedMarket(symbols, seed=seed, rate_per_symbol=rate))
    return await _serve(source, host, port, faults, api_keys, DEFAULT_SLOW_CONSUMER_TIMEOUT_S)


async def start_replay_server(
    path: Path,
    *,
    speed: float | None = 1.0,
    loop: bool = False,
    host: str = "127.0.0.1",
    port: int = 0,
    faults: Faults | None = None,
    api_keys: Collection[str] | None = None,
) -> PolygonProtocolServer:
    """Start a server replaying the recording at ``path``.

    At a paced ``speed`` a client that makes the pump wait more than 10 s is a slow
    consumer and is disconnected, as a live feed does. Unpaced (``speed=None``, the
    command's ``--speed max``) the replay has no pace of its own to keep: it goes as fast
    as the slowest subscribed client reads, and nobody is disconnected for being slow.
    """
    source = RecordingSource(path, speed=speed, loop=loop)
    slow = None if speed is None else DEFAULT_SLOW_CONSUMER_TIMEOUT_S
    return await _serve(source, host, port, faults, api_keys, slow)


async def _serve(  # noqa: PLR0917 - the start functions' options, passed on
    source: FrameSource,
    host: str,
    port: int,
    faults: Faults | None,
    api_keys: Collection[str] | None,
    slow_consumer_timeout_s: float | None,
) -> PolygonProtocolServer:
    server = PolygonProtocolServer(
        source,
        host=host,
        port=port,
        faults=faults,
        api_keys=api_keys,
        slow_consumer_timeout_s=slow_consumer_timeout_s,
    )
    return await server.start()


__all__ = [
    "GARBAGE_ROTATION",
    "Faults",
    "FrameSource",
    "GarbageKind",
    "PolygonProtocolServer",
    "RecordingSource",
    "SimulatedSource",
    "garbage_frame",
    "start_replay_server",
    "start_simulated_server",
]
