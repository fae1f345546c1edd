"""A minimal WebSocket client for the fan-out subscribers: just what reading small text
messages needs, on a bare ``asyncio.Protocol``.

Why not ``websockets``: on this 2-core machine the subscribers share the CPU with the
server under test, and ``websockets``' general client (frame objects, UTF-8 checks, a
message queue, an awaited ``recv`` per message) costs ~20 µs per message, so 1,000
subscribers at 100 messages/s would measure the client, not the server. Here a message
is a few slices of a bytearray and one callback, several times cheaper.

What it does: the HTTP/1.1 upgrade (one subprotocol, checked), unmasked server frames
(text/binary, continuation, ping -> pong, close -> close), masked client text frames,
and nothing else: no extensions (``--deflate`` runs use ``websockets``), no limits a
public client would need (the server is ours). ``pause_reading`` plus a small
``SO_RCVBUF`` is how the slow-client scenario makes a subscriber that does not read.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
import struct
from collections.abc import Callable
from typing import Final, cast
from urllib.parse import urlsplit

GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MAX_HANDSHAKE: Final = 64 * 1024


class HandshakeError(RuntimeError):
    """The server did not switch protocols the way we asked."""


def mask_payload(data: bytes, key: bytes) -> bytes:
    """RFC 6455 masking (XOR with the repeated 4-byte key), in one big-int operation."""
    n = len(data)
    if n == 0:
        return b""
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


def encode_frame(opcode: int, payload: bytes, key: bytes | None = None) -> bytes:
    """One final client frame (masked with ``key``, random when not given)."""
    key = key if key is not None else os.urandom(4)
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return header + key + mask_payload(payload, key)


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


class FrameReader:
    """Incremental parser of unmasked server frames; whole messages go to ``on_message``,
    control frames to ``on_control(opcode, payload)``."""

    __slots__ = ("_buf", "_fragments", "on_control", "on_message")

    def __init__(
        self,
        on_message: Callable[[bytes], None],
        on_control: Callable[[int, bytes], None],
    ) -> None:
        self.on_message = on_message
        self.on_control = on_control
        self._buf = bytearray()
        self._fragments: list[bytes] | None = None

    def feed(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        n = len(buf)
        pos = 0
        while n - pos >= 2:
            b0 = buf[pos]
            length = buf[pos + 1]
            if length & 0x80:
                raise ValueError("masked frame from the server")
            head = pos + 2
            if length == 126:
                if n - pos < 4:
                    break
                length = (buf[head] << 8) | buf[head + 1]
                head += 2
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(buf[head : head + 8], "big")
                head += 8
            end = head + length
            if end > n:
                break
            payload = bytes(buf[head:end])
            pos = end
            opcode = b0 & 0x0F
            if opcode >= OP_CLOSE:
                self.on_control(opcode, payload)
            elif opcode == OP_CONT:
                if self._fragments is None:
                    raise ValueError("continuation frame without a first fragment")
                self._fragments.append(payload)
                if b0 & 0x80:
                    message, self._fragments = b"".join(self._fragments), None
                    self.on_message(message)
            elif b0 & 0x80:
                self.on_message(payload)
            else:
                self._fragments = [payload]
        if pos:
            del buf[:pos]


class WireClient(asyncio.Protocol):
    """One client connection. ``opened`` resolves after the upgrade; ``closed`` when the
    connection is gone (``True`` if the server closed it)."""

    def __init__(self, url: str, subprotocol: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "ws" or parts.hostname is None:
            raise ValueError(f"ws:// URLs only: {url}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.subprotocol = subprotocol
        #: Set ``reader.on_message`` before asking the server for anything.
        self.reader = FrameReader(_ignore, self._on_control)
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[bool] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self._key = base64.b64encode(os.urandom(16)).decode()
        self._mask = os.urandom(4)  # one key per connection: the server is trusted
        self._head = bytearray()
        self._upgraded = False
        self._close_sent = False

    # --- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)
        request = (
            f"GET {self.path} HTTP/1.1\r\n"
            f"Host: {self.host}:{self.port}\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {self._key}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: {self.subprotocol}\r\n"
            "\r\n"
        )
        self.transport.write(request.encode())

    def data_received(self, data: bytes) -> None:
        try:
            if self._upgraded:
                self.reader.feed(data)
            else:
                self._on_handshake(data)
        except (ValueError, HandshakeError) as exc:
            self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed during the handshake: {exc}"))
        if not self.closed.done():
            self.closed.set_result(not self._close_sent)

    # --- handshake ---------------------------------------------------------------------

    def _on_handshake(self, data: bytes) -> None:
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > MAX_HANDSHAKE:
                raise HandshakeError("handshake response too long")
            return
        head, rest = bytes(self._head[:end]).decode("latin-1"), bytes(self._head[end + 4 :])
        self._head.clear()
        lines = head.split("\r\n")
        if not lines[0].startswith("HTTP/1.1 101"):
            raise HandshakeError(f"server answered {lines[0]!r}")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("sec-websocket-accept") != accept_key(self._key):
            raise HandshakeError("bad Sec-WebSocket-Accept")
        if headers.get("sec-websocket-protocol") != self.subprotocol:
            raise HandshakeError(f"subprotocol {headers.get('sec-websocket-protocol')!r}")
        self._upgraded = True
        self.opened.set_result(None)
        if rest:
            self.reader.feed(rest)

    def _fail(self, exc: Exception) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    # --- frames ------------------------------------------------------------------------

    def _on_control(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_PING:
            self._write(OP_PONG, payload)
        elif opcode == OP_CLOSE:
            if not self._close_sent:
                self._write(OP_CLOSE, payload[:2])
                self._close_sent = True
            if self.transport is not None:
                self.transport.close()
            if not self.closed.done():
                self.closed.set_result(True)

    def _write(self, opcode: int, payload: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(encode_frame(opcode, payload, self._mask))

    def send_text(self, data: bytes) -> None:
        self._write(OP_TEXT, data)

    def pause_reading(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def close(self) -> None:
        """Send a normal close frame and close the transport (no wait for the echo)."""
        if not self._close_sent:
            self._write(OP_CLOSE, struct.pack("!H", 1000))
            self._close_sent = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self._close_sent = True
        if self.transport is not None:
            self.transport.abort()


def _ignore(message: bytes) -> None:
    """Messages before a handler is set: none arrive, the server speaks when spoken to."""


async def open_wire(
    url: str,
    subprotocol: str,
    *,
    local_ip: str | None = None,
    rcvbuf: int | None = None,
    timeout_s: float = 30.0,
) -> WireClient:
    """Connect and upgrade; ``rcvbuf`` sets ``SO_RCVBUF`` before connecting (a small one
    makes a client that stops reading push back on the server within a few KiB)."""
    loop = asyncio.get_running_loop()
    client = WireClient(url, subprotocol)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if local_ip is not None:
            sock.bind((local_ip, 0))
        async with asyncio.timeout(timeout_s):
            await loop.sock_connect(sock, (client.host, client.port))
            await loop.create_connection(lambda: client, sock=sock)
            await client.opened
    except BaseException:
        if client.transport is not None:
            client.transport.abort()
        else:
            sock.close()
        raise
    return client
