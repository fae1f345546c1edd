"""Serve an ASGI app with uvicorn on a loopback socket, inside the test's event loop.

For local fakes of outside services. ``abort_connection`` cuts one client's TCP
connection with a reset, the way a dead network or a crashed load balancer does (no
response, no close frame), which an ASGI app cannot do on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn

from tests.support.timing import TIMEOUT


class QuietServer(uvicorn.Server):
    """Signals belong to pytest."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def loopback_socket(port: int = 0) -> socket.socket:
    """A bound (not yet listening) socket on 127.0.0.1; ``port=0`` picks a free one.
    ``SO_REUSEADDR`` lets a fake come back on the port it had before an outage.

    The protocol is named: asyncio turns Nagle's algorithm off (``TCP_NODELAY``) only
    on accepted sockets whose ``proto`` is ``IPPROTO_TCP``, and a socket made with the
    default ``proto=0`` passes 0 on to them. With Nagle on, uvicorn's answer (headers
    and body written separately) waits for the client's delayed ACK: 40 ms a request."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


@asynccontextmanager
async def serve_asgi(app: Any, sock: socket.socket, *, name: str) -> AsyncIterator[QuietServer]:
    """Run ``app`` on ``sock`` until the block ends; the socket is closed afterwards."""
    config = uvicorn.Config(
        app, lifespan="off", log_config=None, access_log=False, timeout_graceful_shutdown=1
    )
    server = QuietServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(TIMEOUT):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError(f"{name} stopped during start-up")
                await asyncio.sleep(0.01)
        yield server
    finally:
        server.should_exit = True
        async with asyncio.timeout(TIMEOUT):
            await task
        sock.close()


def abort_connection(server: uvicorn.Server, client: tuple[str, int] | None) -> bool:
    """Reset the TCP connection of the request or WebSocket whose ASGI ``scope["client"]``
    is ``client``. False when it is already gone."""
    for connection in list(server.server_state.connections):
        transport = getattr(connection, "transport", None)
        if transport is not None and getattr(connection, "client", None) == client:
            transport.abort()
            return True
    return False
