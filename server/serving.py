"""How uvicorn serves tickgraph: one place, for the CLI and the test servers alike."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn

from server.settings import Settings

#: uvicorn's sans-I/O WebSocket protocol plus the direct frame writer the outbox uses
#: (``server.websocket.frames``). uvloop and httptools are used when installed
#: (uvicorn's "auto"), the pure-Python asyncio and h11 otherwise.
WS_PROTOCOL = "server.websocket.frames:FanoutWebSocketProtocol"


def uvicorn_config(app: Any, settings: Settings, **overrides: Any) -> uvicorn.Config:
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "ws": WS_PROTOCOL,
        "ws_max_size": settings.ws_max_message_bytes,
        # Compression costs CPU and tens of KiB per connection; clients rarely need it
        # for small JSON messages.
        "ws_per_message_deflate": settings.ws_compression,
        "lifespan": "on",
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": 5,
        # X-Forwarded-For is believed only from the proxies the operator named: from
        # anyone else it would let a client choose its own address (a fresh rate-limit
        # bucket per request). uvicorn's own default trusts 127.0.0.1. The app applies
        # it itself (server.app), after the correlation layer has seen the real peer.
        "proxy_headers": False,
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop (libuv, in C: cheaper socket writes, reads and timers, measured
    in loadtests/RESULTS.md) unless asyncio's is asked for or uvloop is not installed."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


class GracefulServer(uvicorn.Server):
    """SIGTERM/SIGINT start a graceful shutdown and the process then exits 0.

    uvicorn re-raises the captured signal after shutting down, so the process would die
    by signal even though it stopped cleanly; supervisors (and the load harness) then
    report a failure. A second signal forces the exit, as in uvicorn.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    def _on_signal(self) -> None:
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True


class ListenError(Exception):
    """The address cannot be listened on; ``error`` is the operating system's reason."""

    def __init__(self, host: str, port: int, error: OSError) -> None:
        super().__init__(f"cannot listen on {host}:{port}: {error.strerror or error}")
        self.host = host
        self.port = port
        self.error = error


def listen(host: str, port: int, *, backlog: int = 2048) -> list[socket.socket]:
    """Bind and listen on ``host:port`` now, before anything else starts, so a port in
    use is found at once (and costs nothing to clean up). Like asyncio's create_server,
    one socket per address the host resolves to (``localhost``: IPv4 and IPv6); with
    port 0, only the first, so the chosen port is the one printed."""
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ListenError(host, port, exc) from None
    seen: set[tuple[int, object]] = set()
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in infos:
            if (family, address) in seen or (port == 0 and sockets):
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise ListenError(host, port, exc) from None
    return sockets
