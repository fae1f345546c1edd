"""How an outbox's messages reach the socket.

``FanoutWebSocketProtocol`` is uvicorn's ``websockets-sansio`` protocol with one
addition, offered to the application as an ASGI scope extension
(``scope["extensions"]["tickgraph.frames"]``): a ``DirectFrames`` writer that frames
messages itself and hands them to the transport in one ``write``, synchronously, and
tells the outbox when a paused transport drains. The ASGI path costs a coroutine, a
message dict and two state checks per message; on a fan-out of thousands of messages
per event that is most of the work. Select it with
``uvicorn.Config(ws="server.websocket.frames:FanoutWebSocketProtocol")`` (``server.serving``
does).

Under any other server the extension is absent and ``AsgiFrames`` sends through ASGI
``websocket.send``, one message at a time from a writer task: slower, same behaviour.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocket
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State
from websockets.server import ServerProtocol

EXTENSION = "tickgraph.frames"


def frame_text(message: bytes, out: list[bytes]) -> None:
    """Append an unmasked, final WebSocket text frame holding ``message`` (RFC 6455 5.2)."""
    n = len(message)
    if n < 126:
        out.append(bytes((0x81, n)))
    elif n < 65_536:
        out.append(b"\x81\x7e" + n.to_bytes(2, "big"))
    else:
        out.append(b"\x81\x7f" + n.to_bytes(8, "big"))
    out.append(message)


class DirectFrames:
    """Writes frames straight to a ``FanoutWebSocketProtocol``'s transport."""

    __slots__ = ("_callbacks", "_protocol")

    def __init__(self, protocol: FanoutWebSocketProtocol) -> None:
        self._protocol = protocol
        self._callbacks: list[Callable[[], None]] = []

    @property
    def closed(self) -> bool:
        p = self._protocol
        return p.disconnected or p.close_sent or p.conn.state is not State.OPEN

    def writable(self) -> bool:
        p = self._protocol
        return (
            p.writable.is_set()
            and not p.disconnected
            and not p.close_sent
            and p.conn.state is State.OPEN
        )

    def write(self, messages: list[bytes]) -> None:
        p = self._protocol
        conn: ServerProtocol = p.conn
        if conn.extensions:
            # permessage-deflate: each message is compressed by the protocol object.
            for message in messages:
                conn.send_text(message)
            p.transport.write(b"".join(conn.data_to_send()))
            return
        parts: list[bytes] = []
        for message in messages:
            frame_text(message, parts)
        p.transport.write(b"".join(parts))

    def when_writable(self, callback: Callable[[], None]) -> None:
        if self.writable() or self._protocol.disconnected:
            callback()
        else:
            self._callbacks.append(callback)

    def _fire(self) -> None:
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()


class FanoutWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol, offering ``DirectFrames`` to the app."""

    #: Not ``frames``: uvicorn uses that name for incoming message fragments.
    direct_frames: DirectFrames | None = None

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        # The ASGI task was only scheduled: it sees the extension when it starts.
        if scope is not None:
            self.direct_frames = DirectFrames(self)
            scope["extensions"][EXTENSION] = self.direct_frames

    async def send(self, message: Any) -> None:
        await super().send(message)
        if self.handshake_complete and getattr(self, "request", None) is not None:
            # The handshake's request and response (headers and all) are not needed
            # once it is done: a few KiB per connection for as long as it lives.
            self.request = self.response = None  # type: ignore[assignment]

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.direct_frames is not None:
            self.direct_frames._fire()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.direct_frames is not None:
            self.direct_frames._fire()


class AsgiFrames:
    """The portable writer: ASGI ``websocket.send``, one message at a time."""

    __slots__ = ("_callbacks", "_closed", "_pending", "_task", "_ws")

    def __init__(self, ws: WebSocket) -> None:
        self._ws = ws
        self._pending: deque[bytes] = deque()
        self._task: asyncio.Task[None] | None = None
        self._callbacks: list[Callable[[], None]] = []
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def writable(self) -> bool:
        # Busy sending means the client is slow: let the outbox conflate meanwhile.
        return not self._pending and not self._closed

    def write(self, messages: list[bytes]) -> None:
        self._pending.extend(messages)
        if self._task is None:
            self._task = asyncio.create_task(self._send_all())

    def when_writable(self, callback: Callable[[], None]) -> None:
        if self.writable() or self._closed:
            callback()
        else:
            self._callbacks.append(callback)

    async def _send_all(self) -> None:
        try:
            while self._pending:
                await self._ws.send_text(self._pending.popleft().decode())
        except Exception:
            # The connection is gone: the handler's own read loop ends it.
            self._closed = True
            self._pending.clear()
        finally:
            self._task = None
            callbacks, self._callbacks = self._callbacks, []
            for callback in callbacks:
                with contextlib.suppress(Exception):
                    callback()


def writer_for(ws: WebSocket) -> DirectFrames | AsgiFrames:
    frames = ws.scope.get("extensions", {}).get(EXTENSION)
    return frames if isinstance(frames, DirectFrames) else AsgiFrames(ws)
