"""An ASGI app served by uvicorn on a free loopback port, for the local fakes of outside
APIs (``fake_polygon_rest``, ``fake_anthropic``)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
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


@asynccontextmanager
async def serving(
    app: Any, *, name: str, on_stop: Callable[[], None] | None = None, **config: Any
) -> AsyncIterator[int]:
    """Serve ``app`` on 127.0.0.1 and yield its port. ``on_stop`` runs first at shutdown
    (to cut slow responses short rather than wait out their delays)."""
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose protocol says
    # TCP, and accepted sockets inherit it. Without it, Nagle holds a small write (an SSE
    # event) until the client's delayed ACK, 40 ms, on a kept-alive connection.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
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
        yield sock.getsockname()[1]
    finally:
        if on_stop is not None:
            on_stop()
        server.should_exit = True
        async with asyncio.timeout(TIMEOUT):
            await task
        sock.close()


class LoopbackFake:
    """Base of a fake served with ``serving``: ``async with Fake() as fake:`` starts it,
    ``fake.base_url`` is where it listens. Subclasses say how in ``_serve``."""

    _port: int | None = None
    _server: contextlib.AbstractAsyncContextManager[int] | None = None

    def _serve(self) -> contextlib.AbstractAsyncContextManager[int]:
        raise NotImplementedError

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
