"""The ``trade_updates`` stream: connect, authenticate, listen, and say when it (re)connects.

alpaca-py's ``TradingStream`` reconnects by itself but gives no signal that it did, so
its caller cannot reconcile what was missed (Alpaca replays nothing), and a refused key
is retried forever with only a log line (docs/alpaca.md). This client speaks the same
three-message protocol on our own event loop with ``websockets``:

    → {"action": "auth", "key": KEY_ID, "secret": SECRET}
    ← {"stream": "authorization", "data": {"status": "authorized", ...}}
    → {"action": "listen", "data": {"streams": ["trade_updates"]}}
    ← {"stream": "listening", "data": {"streams": ["trade_updates"]}}
    ← {"stream": "trade_updates", "data": {...}}  (binary or text frames of JSON)

``on_connected`` is awaited after every successful handshake, before any update of
that connection is handed on: the adapter reconciles there, and the updates queued
meanwhile follow in order. Reconnects back off with jitter, forever; an unauthorized
key is reported (``on_unauthorized``) and retried at the longest delay. A connection
with no frame or pong for ``ping_timeout_s`` is considered dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from streams.backoff import Backoff

log = logging.getLogger(__name__)
#: The client's frame log. Its first frame carries the secret, and ``websockets`` logs
#: frames at DEBUG: this logger never goes below INFO, whatever the configured level.
FRAMES = logging.getLogger("brokers.alpaca.frames")
FRAMES.setLevel(logging.INFO)


class StreamRefused(Exception):
    pass


class TradeUpdatesStream:
    def __init__(
        self,
        url: str,
        key_id: str,
        secret: str,
        *,
        on_update: Callable[[dict[str, Any]], None],
        on_connected: Callable[[], Awaitable[None]],
        on_unauthorized: Callable[[], None] = lambda: None,
        backoff: Backoff | None = None,
        ping_interval_s: float = 10.0,
        ping_timeout_s: float = 20.0,
        handshake_timeout_s: float = 10.0,
    ) -> None:
        self._url = url
        self._key_id = key_id
        self._secret = secret
        self._on_update = on_update
        self._on_connected = on_connected
        self._on_unauthorized = on_unauthorized
        self._backoff = backoff or Backoff(0.25, 30.0)
        self._ping = (ping_interval_s, ping_timeout_s)
        self._handshake_timeout_s = handshake_timeout_s
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.connections = 0
        self.unauthorized = False

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"alpaca-stream-{self._key_id[:6]}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.connected.clear()

    async def _run(self) -> None:
        while True:
            try:
                await self._session()
                delay = self._backoff.next_delay()
            except StreamRefused:
                self.unauthorized = True
                self._on_unauthorized()
                delay = self._backoff.saturate()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("alpaca stream: %s; reconnecting", type(exc).__name__)
                delay = self._backoff.next_delay()
            self.connected.clear()
            await asyncio.sleep(delay)

    async def _session(self) -> None:
        interval, timeout = self._ping
        async with websockets.connect(
            self._url,
            ping_interval=interval,
            ping_timeout=timeout,
            open_timeout=self._handshake_timeout_s,
            max_size=2**22,
            logger=FRAMES,
        ) as ws:
            async with asyncio.timeout(self._handshake_timeout_s):
                await self._handshake(ws)
            self.unauthorized = False
            self.connections += 1
            # Updates of this connection wait until the reconciliation has run.
            backlog: list[dict[str, Any]] = []
            reader = asyncio.create_task(self._read(ws, backlog))
            try:
                await self._on_connected()
                for message in backlog:
                    self._on_update(message)
                backlog.clear()
                self._backoff.reset()
                self.connected.set()
                await reader
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader

    async def _handshake(self, ws: ClientConnection) -> None:
        await ws.send(json.dumps({"action": "auth", "key": self._key_id, "secret": self._secret}))
        auth = _data(await ws.recv(), "authorization")
        if auth.get("status") != "authorized":
            raise StreamRefused("the key was not authorized")
        await ws.send(json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
        listening = _data(await ws.recv(), "listening")
        if "trade_updates" not in (listening.get("streams") or []):
            raise StreamRefused("trade_updates was not granted")

    async def _read(self, ws: ClientConnection, backlog: list[dict[str, Any]]) -> None:
        async for frame in ws:
            try:
                message = json.loads(frame)
            except ValueError:
                log.warning("alpaca stream: a frame that is not JSON (%d bytes)", len(frame))
                continue
            if not isinstance(message, dict) or message.get("stream") != "trade_updates":
                continue
            data = message.get("data")
            if not isinstance(data, dict):
                continue
            if self.connected.is_set():
                self._on_update(data)
            else:
                backlog.append(data)
        raise ConnectionError("the stream closed")


def _data(frame: str | bytes, stream: str) -> dict[str, Any]:
    message = json.loads(frame)
    if isinstance(message, list) and message:
        message = message[0]
    if not isinstance(message, dict) or message.get("stream") != stream:
        raise ConnectionError(f"expected {stream!r} in the handshake")
    data = message.get("data")
    return data if isinstance(data, dict) else {}
