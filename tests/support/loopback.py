"""Serve an ASGI app with uvicorn on a loopback socket, inside the test's event loop.

For local fakes of outside services (``fake_polygon_rest``, ``fake_anthropic``,
``fake_alpaca``). ``abort_connection`` cuts one client's TCP connection with a reset,
the way a dead network or a crashed load balancer does (no response, no close frame),
which an ASGI app cannot do on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, Self

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
    default ``proto=0`` passes 0 on to them. With Nagle on, a small write (uvicorn's
    headers and body written separately, an SSE event) waits for the client's delayed
    ACK: 40 ms a request on a kept-alive connection."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


@asynccontextmanager
async def serve_asgi(
    app: Any,
    sock: socket.socket,
    *,
    name: str,
    on_stop: Callable[[], None] | None = None,
    **config: Any,
) -> AsyncIterator[QuietServer]:
    """Run ``app`` on ``sock`` until the block ends; the socket is closed afterwards.
    ``on_stop`` runs first at shutdown (to cut slow responses short rather than wait
    out their delays)."""
    server = QuietServer(
        uvicorn.Config(
            app,
            lifespan="off",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=1,
            **config,
        )
    )
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
        if on_stop is not None:
            on_stop()
        server.should_exit = True
        async with asyncio.timeout(TIMEOUT):
            await task
        sock.close()


@asynccontextmanager
async def serving(
    app: Any, *, name: str, on_stop: Callable[[], None] | None = None, **config: Any
) -> AsyncIterator[int]:
    """Serve ``app`` on a free loopback port and yield the port."""
    sock = loopback_socket()
    async with serve_asgi(app, sock, name=name, on_stop=on_stop, **config):
        yield sock.getsockname()[1]


def abort_connection(server: uvicorn.Server, client: tuple[str, int] | None) -> bool:
    """Reset the TCP connection of the request or WebSocket whose ASGI ``scope["client"]``
    is ``client``. False when it is already gone."""
    for connection in list(server.server_state.connections):
        transport = getattr(connection, "transport", None)
        if transport is not None and getattr(connection, "client", None) == client:
            transport.abort()
            return True
    return False


class LoopbackFake(ABC):
    """Base of a fake served with ``serving``: ``async with Fake() as fake:`` starts it,
    ``fake.base_url`` is where it listens. Subclasses say how in ``_serve``."""

    _port: int | None = None
    _server: contextlib.AbstractAsyncContextManager[int] | None = None

    @abstractmethod
    def _serve(self) -> contextlib.AbstractAsyncContextManager[int]:
        """``serving(app, ...)`` of the fake's app."""

    @property
    def base_url(self) -> str:
        assert self._port is not None, "the fake is not running"
        return f"http://127.0.0.1:{self._port}"

    async def __aenter__(self) -> Self:
        self._server = self._serve()
        self._port = await self._server.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        assert self._server is not None
        await self._server.__aexit__(*exc_info)
