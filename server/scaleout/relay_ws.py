"""A follower's WebSocket side of the relay: the operations of one client connection
that need the leader share one upstream graphql-transport-ws connection to it, opened
with the client's own ``connection_init`` payload (so the leader authenticates, limits
and charges the same account), and every message for them is passed on as it came.

The client keeps its operation ids; the follower only routes. When the upstream
connection ends (the leader stopped, or leadership moved), each relayed operation gets
an ``error`` with SERVICE_UNAVAILABLE: the client subscribes again (with the last
``cursor`` for ``orderUpdates``/``alertEvents``, which then resume without a gap or a
duplicate) and reaches the new leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from server.scaleout.relay_http import RELAYED
from server.tasks import cancel_all

log = logging.getLogger(__name__)

Deliver = Callable[[bytes], Awaitable[None]]


def unavailable(operation_id: str, message: str) -> bytes:
    error = {"message": message, "extensions": {"code": "SERVICE_UNAVAILABLE"}}
    return orjson.dumps({"id": operation_id, "type": "error", "payload": [error]})


class Upstream:
    """The relayed operations of one client connection."""

    def __init__(
        self,
        leader: str,
        init_payload: dict[str, Any] | None,
        deliver: Deliver,
        *,
        client_ip: str | None = None,
        open_timeout_s: float = 5.0,
    ) -> None:
        scheme = "wss" if leader.startswith("https:") else "ws"
        self._url = f"{scheme}:{leader.split(':', 1)[1]}/graphql"
        self.leader = leader
        self._init = init_payload
        self._deliver = deliver
        self._headers = {RELAYED: "1"}
        if client_ip is not None:
            self._headers["x-forwarded-for"] = client_ip  # see relay_http
        self._timeout = open_timeout_s
        self.active: set[str] = set()
        self._socket: ClientConnection | None = None
        self._opening: asyncio.Lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None
        self.closed = False

    async def subscribe(self, operation_id: str, payload: dict[str, Any]) -> None:
        self.active.add(operation_id)
        try:
            socket = await self._open()
            await socket.send(
                orjson.dumps({"id": operation_id, "type": "subscribe", "payload": payload}).decode()
            )
        except (OSError, TimeoutError, WebSocketException, _Refused) as exc:
            log.warning("could not relay a subscription to the leader at %s: %s", self.leader, exc)
            self.active.discard(operation_id)
            await self._deliver(unavailable(operation_id, "The leader cannot be reached; retry."))

    async def complete(self, operation_id: str) -> None:
        if operation_id not in self.active:
            return
        self.active.discard(operation_id)
        socket = self._socket
        if socket is not None:
            with contextlib.suppress(WebSocketException, OSError):
                await socket.send(orjson.dumps({"id": operation_id, "type": "complete"}).decode())

    async def close(self) -> None:
        self.closed = True
        self.active.clear()
        await cancel_all([self._reader])
        if self._socket is not None:
            with contextlib.suppress(Exception):
                await self._socket.close()

    async def _open(self) -> ClientConnection:
        async with self._opening:
            if self._socket is not None:
                return self._socket
            async with asyncio.timeout(self._timeout):
                socket = await connect(
                    self._url,
                    subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                    additional_headers=self._headers,
                    max_size=None,
                    compression=None,
                )
                init: dict[str, Any] = {"type": "connection_init"}
                if self._init is not None:
                    init["payload"] = self._init
                await socket.send(orjson.dumps(init).decode())
                ack = orjson.loads(await socket.recv())
            if ack.get("type") != "connection_ack":
                await socket.close()
                raise _Refused(f"the leader answered {ack.get('type')!r} to connection_init")
            self._socket = socket
            self._reader = asyncio.create_task(self._read(socket), name="relay-upstream")
            return socket

    async def _read(self, socket: ClientConnection) -> None:
        reason = "The leader closed the connection; subscribe again."
        try:
            async for frame in socket:
                raw = frame.encode() if isinstance(frame, str) else frame
                message = orjson.loads(raw)
                kind = message.get("type")
                if kind == "ping":
                    await socket.send('{"type":"pong"}')
                    continue
                operation_id = message.get("id")
                if operation_id not in self.active:
                    continue  # completed by the client meanwhile
                if kind in ("error", "complete"):
                    self.active.discard(operation_id)
                await self._deliver(raw)
        except (OSError, WebSocketException) as exc:
            reason = f"The connection to the leader was lost ({exc}); subscribe again."
        finally:
            self._socket = None
            if not self.closed:
                lost, self.active = self.active, set()
                for operation_id in sorted(lost):
                    with contextlib.suppress(Exception):
                        await self._deliver(unavailable(operation_id, reason))


class _Refused(Exception):
    pass
