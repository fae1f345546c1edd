"""The ``trade_updates`` stream at ``/stream``, with Alpaca's handshake.

The client authenticates in either of the two forms Alpaca accepts: the documented
``{"action": "auth", "key": ..., "secret": ...}`` or the older form alpaca-py's
``TradingStream`` still sends, ``{"action": "authenticate", "data": {"key_id": ...,
"secret_key": ...}}``. Both are answered ``{"stream": "authorization", "data":
{"status": "authorized" | "unauthorized", "action": "authenticate"}}``; an unauthorized
connection is closed. ``{"action": "listen", "data": {"streams": [...]}}`` sets the
streams listened to (an empty list stops them) and is acknowledged ``{"stream":
"listening", "data": {"streams": [the ones granted]}}``; listening before authorizing
is answered unauthorized (action ``listen``) and closed.

Frames are binary, holding JSON, as on ``paper-api.alpaca.markets`` (Alpaca's docs say
so; text frames with ``binary_frames = False``), or MessagePack when the upgrade request
says ``Content-Type: application/msgpack``. Updates emitted while a client is not
listening are gone: nothing is replayed on reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgpack
from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from tests.support.fake_alpaca.account import Account

if TYPE_CHECKING:
    from tests.support.fake_alpaca.fake import FakeAlpaca

STREAMS = frozenset({"trade_updates"})
_CLOSE = object()


class StreamConnection:
    def __init__(self, websocket: WebSocket, *, msgpack_codec: bool, binary: bool) -> None:
        self.websocket = websocket
        self.client = websocket.scope.get("client")
        self.msgpack = msgpack_codec
        self.binary = binary or msgpack_codec
        self.account: Account | None = None
        self._out: asyncio.Queue[object] = asyncio.Queue()

    def push(self, message: dict[str, Any]) -> None:
        """Queue a message; called synchronously wherever the account changes."""
        self._out.put_nowait(message)

    def close(self) -> None:
        self._out.put_nowait(_CLOSE)

    def decode(self, message: Mapping[str, Any]) -> Any:
        raw = message.get("bytes") if message.get("bytes") is not None else message.get("text")
        if self.msgpack and isinstance(raw, bytes):
            return msgpack.unpackb(raw)
        return json.loads(raw or "null")

    async def send_loop(self) -> None:
        while True:
            item = await self._out.get()
            if item is _CLOSE:
                await self.websocket.close(1000)
                return
            if self.msgpack:
                await self.websocket.send_bytes(msgpack.packb(item))
            elif self.binary:
                await self.websocket.send_bytes(json.dumps(item).encode())
            else:
                await self.websocket.send_text(json.dumps(item))


def authorization(status: str, action: str) -> dict[str, Any]:
    return {"stream": "authorization", "data": {"status": status, "action": action}}


def credentials(request: dict[str, Any]) -> tuple[Any, Any]:
    if request.get("action") == "auth":
        return request.get("key"), request.get("secret")
    data = request.get("data")
    if not isinstance(data, dict):
        return None, None
    return data.get("key_id"), data.get("secret_key")


async def stream_endpoint(fake: FakeAlpaca, websocket: WebSocket) -> None:
    if fake.streams_refused:
        await websocket.send_denial_response(Response("stream unavailable", 503))
        return
    await websocket.accept()
    codec = "application/msgpack" in websocket.headers.get("content-type", "")
    connection = StreamConnection(websocket, msgpack_codec=codec, binary=fake.binary_frames)
    fake.stream_connected(connection)
    sender = asyncio.create_task(connection.send_loop())
    try:
        await _converse(fake, connection)
        await sender  # flush the last answer, then the close
    except (WebSocketDisconnect, RuntimeError, ValueError):
        pass  # the client went away, or sent something that is not JSON
    finally:
        if connection.account is not None:
            connection.account.listeners.discard(connection.push)
        fake.stream_disconnected(connection)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender


async def _converse(fake: FakeAlpaca, connection: StreamConnection) -> None:
    while True:
        message = await connection.websocket.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        request = connection.decode(message)
        if not isinstance(request, dict):
            raise ValueError("not a JSON object")
        action = request.get("action")
        if action in {"auth", "authenticate"}:
            key_id, secret = credentials(request)
            account = fake.accounts.get(key_id) if isinstance(key_id, str) else None
            if (
                account is None
                or not isinstance(secret, str)
                or not hmac.compare_digest(secret.encode(), account.secret.encode())
            ):
                connection.push(authorization("unauthorized", "authenticate"))
                connection.close()
                return
            connection.account = account
            connection.push(authorization("authorized", "authenticate"))
        elif action == "listen":
            if connection.account is None:
                connection.push(authorization("unauthorized", "listen"))
                connection.close()
                return
            data = request.get("data")
            asked = data.get("streams") if isinstance(data, dict) else None
            granted = [s for s in asked if s in STREAMS] if isinstance(asked, list) else []
            # The acknowledgement goes out before any update for the new subscription.
            connection.push({"stream": "listening", "data": {"streams": granted}})
            if "trade_updates" in granted:
                connection.account.listeners.add(connection.push)
            else:
                connection.account.listeners.discard(connection.push)
        else:
            raise ValueError(f"unknown action {action!r}")
