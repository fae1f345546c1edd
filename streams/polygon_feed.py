"""The upstream connection: polygon-api-client's ``WebSocketClient``, supervised.

The client library handles the protocol (connected → auth → subscribe) and hands us
raw frames; decoding is ours (msgspec, once). What the library does not do, the
supervisor does:

* it gives up after ``max_reconnects`` and returns on a clean close, so we run it
  with ``max_reconnects=0`` and own every reconnect: exponential backoff with
  jitter, forever, reset only after a connection that stayed healthy;
* every new connection is created with the full current topic set, so it
  re-subscribes; topics added or dropped at run time go to the live client;
* ``max_connections`` (another client with our key took over) backs off to the
  maximum delay instead of fighting the other connection;
* the feed status tracker always says what is going on.

Processing a frame never awaits: the client awaits our processor inline, so any
wait here would stall the whole feed. ``behind()`` says when the feed is not keeping
up (upstream data waits unread in the kernel): the delivery side then gives the feed
precedence (``server.delivery.outbox.Flusher``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterable

from streams.backoff import Backoff
from streams.events import Status
from streams.feed_status import FeedState, FeedStatusTracker
from streams.polygon_client import AuthError, WebSocketClient

log = logging.getLogger(__name__)

FrameSink = Callable[[str | bytes, int], None]

#: Polygon sends large frames for wildcard subscriptions; 1 MiB (the default) is too small.
MAX_FRAME_BYTES = 16 * 1024 * 1024
#: Unread upstream bytes beyond which the feed counts as behind: the client library
#: reads ahead a few messages itself, so this much waiting in the kernel means the
#: server is not keeping up (a few hundred events), not a frame in flight.
BEHIND_BYTES = 16 * 1024

try:  # the kernel's count of unread bytes; not on every platform
    from fcntl import ioctl
    from termios import FIONREAD
except ImportError:  # pragma: no cover - not Linux/macOS
    ioctl = None  # type: ignore[assignment]


class PolygonFeed:
    def __init__(
        self,
        *,
        api_key: str,
        feed: str,
        secure: bool,
        on_frame: FrameSink,
        status: FeedStatusTracker,
        backoff: Backoff,
        topics: Iterable[str] = (),
        on_session: Callable[[], None] | None = None,
        healthy_after_s: float = 30.0,
    ) -> None:
        self._api_key = api_key
        self._feed = feed
        self._secure = secure
        self._on_frame = on_frame
        self._on_session = on_session
        self.status = status
        self._backoff = backoff
        self._healthy_after_s = healthy_after_s
        self._topics: set[str] = set(topics)
        self._client: WebSocketClient | None = None
        self._session_live = False
        self._evicted = False
        self._stopping = asyncio.Event()
        status.topics_changed(self._topics)

    # --- keeping up -------------------------------------------------------------------

    def unread_bytes(self) -> int:
        """What upstream sent that this process has not read yet (the receive queue of
        the feed's socket); 0 when not connected, or where the kernel does not say."""
        client = self._client
        ws = client.websocket if client is not None else None
        transport = getattr(ws, "transport", None)
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is None or ioctl is None:
            return 0
        try:
            raw = ioctl(sock.fileno(), FIONREAD, b"\0\0\0\0")
        except (OSError, ValueError):  # closed meanwhile
            return 0
        return int.from_bytes(raw, sys.byteorder, signed=True)

    def behind(self) -> bool:
        """Upstream data is waiting for us: the feed is not keeping up right now."""
        return self.unread_bytes() > BEHIND_BYTES

    # --- topics ------------------------------------------------------------------------

    @property
    def topics(self) -> frozenset[str]:
        return frozenset(self._topics)

    def want(self, topics: Iterable[str]) -> None:
        new = set(topics) - self._topics
        if not new:
            return
        self._topics |= new
        if self._client is not None:
            self._client.subscribe(*sorted(new))
        self.status.topics_changed(self._topics)

    def unwant(self, topics: Iterable[str]) -> None:
        gone = set(topics) & self._topics
        if not gone:
            return
        self._topics -= gone
        if self._client is not None:
            self._client.unsubscribe(*sorted(gone))
        self.status.topics_changed(self._topics)

    # --- frames and status notices ----------------------------------------------------

    async def _process(self, frame: str | bytes) -> None:
        received_ns = time.time_ns()
        if not self._session_live:
            # The first frame after auth (our subscription acks): the session is live.
            self._session_live = True
            if self._on_session is not None:
                self._on_session()
            self.status.connected()
        self._on_frame(frame, received_ns)

    def handle_status(self, notice: Status) -> None:
        """Status notices found in data frames (the ingest decodes them for us)."""
        if notice.status == "max_connections":
            self._evicted = True
            log.warning("polygon evicted this connection: %s", notice.message)
        elif notice.status == "error":
            log.warning("polygon reported an error: %s", notice.message)

    # --- supervision ------------------------------------------------------------------

    async def run(self) -> None:
        """Keep a connection up until ``stop``. Never returns early, never raises."""
        while not self._stopping.is_set():
            error, state = await self._one_session()
            if self._stopping.is_set():
                break
            if self._evicted:
                self._evicted = False
                state = FeedState.EVICTED
                delay = self._backoff.saturate()
            else:
                delay = self._backoff.next_delay()
            self.status.disconnected(error, delay, state=state)
            log.warning("feed disconnected (%s); reconnecting in %.2fs", error, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)
        self.status.stopped()

    async def _one_session(self) -> tuple[str, FeedState]:
        self.status.connecting()
        self._session_live = False
        client = WebSocketClient(
            api_key=self._api_key,
            feed=self._feed,
            market="stocks",
            secure=self._secure,
            raw=True,
            subscriptions=sorted(self._topics),
            max_reconnects=0,
        )
        self._client = client
        started = time.monotonic()
        state = FeedState.DISCONNECTED
        try:
            await client.connect(self._process, max_size=MAX_FRAME_BYTES, open_timeout=10)
            error = "upstream closed the connection"
        except AuthError as exc:
            error, state = f"authentication failed: {exc}", FeedState.AUTH_FAILED
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        finally:
            self._client = None
        if self._session_live and time.monotonic() - started >= self._healthy_after_s:
            self._backoff.reset()
        return error, state

    async def stop(self) -> None:
        self._stopping.set()
        client = self._client
        if client is not None and client.websocket is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), timeout=2)
