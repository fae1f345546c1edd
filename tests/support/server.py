"""Run a real tickgraph on a free loopback port, in process, with uvicorn configured as
`tickgraph serve` configures it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn

from server.app import create_app
from server.runtime import Runtime
from server.serving import uvicorn_config
from server.settings import Settings
from tests.support.timing import TIMEOUT


@dataclass
class RunningServer:
    settings: Settings
    port: int
    server: uvicorn.Server
    app_state: dict[str, Runtime]

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"

    @property
    def runtime(self) -> Runtime:
        return self.app_state["runtime"]


class _QuietServer(uvicorn.Server):
    """Signals belong to pytest, not to the server under test."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@asynccontextmanager
async def running_server(
    settings: Settings, *, send_buffer: int | None = None, **app_options: Any
) -> AsyncIterator[RunningServer]:
    """``send_buffer``: SO_SNDBUF for every accepted connection (Linux copies it from
    the listening socket), so a stalled client backs up into the app within a test's
    time instead of into megabytes of kernel buffers. ``app_options`` go to
    ``create_app`` (e.g. ``vendor_dir``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if send_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(settings, **app_options)
    config = uvicorn_config(app, settings, timeout_graceful_shutdown=2)
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(TIMEOUT * 3):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("server stopped during start-up")
                await asyncio.sleep(0.01)
        yield RunningServer(settings, port, server, app.state.runtime_ref)
    finally:
        server.should_exit = True
        async with asyncio.timeout(TIMEOUT):
            await task
        sock.close()
