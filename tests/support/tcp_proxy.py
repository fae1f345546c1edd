"""A stream proxy that can be cut (TCP on loopback, or a Unix socket as PostgreSQL's
test server listens on): a database or cache "unavailable for a while" without
touching the real server that other tests share.

``cut()`` resets every open connection and refuses new ones (what a crashed or
restarting server looks like to its clients); ``restore()`` accepts again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class TcpProxy:
    """``target`` is ``(host, port)`` or a Unix socket path; with ``listen_path`` the
    proxy listens on that Unix socket, else on a free loopback port (``port``)."""

    def __init__(self, target: tuple[str, int] | str, listen_path: str | None = None) -> None:
        self._target = target
        self._listen_path = listen_path
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self.port = 0

    async def start(self, port: int = 0) -> None:
        if self._listen_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._listen_path)
            self._server = await asyncio.start_unix_server(self._accept, self._listen_path)
            return
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if isinstance(self._target, str):
            return await asyncio.open_unix_connection(self._target)
        return await asyncio.open_connection(*self._target)

    async def cut(self) -> None:
        """Reset every connection and stop listening (new ones are refused)."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for client, upstream in list(self._pairs):
            for writer in (client, upstream):
                _reset(writer)
        self._pairs.clear()

    async def restore(self) -> None:
        await self.start(self.port)

    async def close(self) -> None:
        await self.cut()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await self._open()
        except OSError:
            _reset(writer)
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._pairs.discard(pair)
            for w in pair:
                w.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError, RuntimeError):
        writer.write_eof()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST, not FIN: the peer sees the connection die, not end."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()


@asynccontextmanager
async def tcp_proxy(
    target: tuple[str, int] | str, listen_path: str | None = None
) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(target, listen_path)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
