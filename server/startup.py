"""``tickgraph serve`` from start to stop: listen first, then start the parts, then serve.

The order makes failures cheap and clean. The socket is bound before anything else,
so a port in use costs nothing to undo; the parts (database, feed, ...) start next,
and if one fails, ``Runtime.start`` stops those that had started. Every failure is
one line on stderr naming the problem and the flag or variable the user actually
used (``--port`` when the port came from ``--port``), and a documented exit status
(``server.exits``, shown by ``tickgraph serve --help`` and in the README).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
import sys
from collections.abc import Mapping

from server.auth.errors import KeyRingError
from server.errors import TickgraphError
from server.exits import EXIT_LISTEN, EXIT_OK, EXIT_STARTUP
from server.runtime import Runtime
from server.serving import GracefulServer, ListenError, listen, uvicorn_config
from server.settings import Settings
from server.storage.database import DatabaseUnavailable
from server.storage.migrations import MigrationError

log = logging.getLogger("tickgraph")

Names = Mapping[str, str]


def fail(message: str) -> None:
    print(f"tickgraph: {message}", file=sys.stderr, flush=True)


def listen_problem(exc: ListenError, names: Names) -> str:
    host, port = names["TICKGRAPH_HOST"], names["TICKGRAPH_PORT"]
    shown = f"[{exc.host}]" if ":" in exc.host else exc.host
    where = f"cannot listen on {shown}:{exc.port}"
    error = exc.error
    if isinstance(error, socket.gaierror):
        return f"cannot listen on {exc.host!r}: the name does not resolve; fix {host}"
    if error.errno == errno.EADDRINUSE:
        return (
            f"{where}: the port is already in use (another tickgraph?); stop that process "
            f"or choose another port with {port}"
        )
    if error.errno == errno.EACCES:
        return (
            f"{where}: permission denied (ports below 1024 need root); choose a port from "
            f"1024 up with {port}"
        )
    if error.errno == errno.EADDRNOTAVAIL:
        return (
            f"{where}: {exc.host} is not an address of this machine; fix {host} "
            "(127.0.0.1: this machine only, 0.0.0.0: every interface)"
        )
    return f"{where}: {error.strerror or error}"


def startup_problem(exc: BaseException, settings: Settings, names: Names) -> str:
    data_dir = f"{names['TICKGRAPH_DATA_DIR']} = {settings.data_dir}"
    if isinstance(exc, DatabaseUnavailable):
        if settings.database_url is not None:
            return f"DATABASE_URL: {exc.message}"
        return f"the embedded database ({data_dir}): {exc.message}"
    if isinstance(exc, MigrationError):
        return f"the database's schema: {exc.message}"
    if isinstance(exc, KeyRingError):
        where = (
            "TICKGRAPH_JWT_PRIVATE_KEYS"
            if settings.jwt_private_keys is not None
            else f"the signing key in {data_dir}"
        )
        return f"{where}: {exc.message}"
    if isinstance(exc, TickgraphError):
        return exc.message
    if isinstance(exc, PermissionError | FileNotFoundError | NotADirectoryError):
        return f"{exc.strerror}: {exc.filename} (the data directory is {data_dir})"
    return f"{type(exc).__name__}: {exc} (run with --log-level DEBUG for the traceback)"


async def serve(settings: Settings, names: Names) -> int:
    try:
        sockets = listen(settings.host, settings.port)
    except ListenError as exc:
        fail(listen_problem(exc, names))
        return EXIT_LISTEN
    try:
        return await _start_and_serve(settings, names, sockets)
    finally:
        for sock in sockets:
            sock.close()


async def _start_and_serve(settings: Settings, names: Names, sockets: list[socket.socket]) -> int:
    try:
        runtime = await _start_runtime(settings)
    except Exception as exc:
        log.debug("start-up failed", exc_info=exc)
        fail(f"start-up failed: {startup_problem(exc, settings, names)}")
        return EXIT_STARTUP
    if runtime is None:
        fail("stopped during start-up")
        return EXIT_OK
    try:
        from server.app import create_app

        try:
            app = create_app(settings, runtime=runtime)
        except Exception as exc:
            log.debug("start-up failed", exc_info=exc)
            fail(f"start-up failed: {startup_problem(exc, settings, names)}")
            return EXIT_STARTUP
        server = GracefulServer(uvicorn_config(app, settings))
        task = asyncio.create_task(server.serve(sockets=sockets))
        while not server.started and not task.done():  # noqa: ASYNC110 - uvicorn has no start event
            await asyncio.sleep(0.02)
        if server.started:
            runtime.serving()
            # Tests and scripts read this line to find a port chosen with --port 0.
            print(start_line(settings, sockets[0], app.state.graphiql_problem), flush=True)
        try:
            await task
        except SystemExit:  # uvicorn's way of saying its start-up failed (logged)
            return EXIT_STARTUP
        return EXIT_OK if server.started else EXIT_STARTUP
    finally:
        await runtime.stop()


async def _start_runtime(settings: Settings) -> Runtime | None:
    """``Runtime.start``; ``None`` if SIGINT/SIGTERM stopped it (after it cleaned up)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    interrupted = False

    def interrupt() -> None:
        nonlocal interrupted
        interrupted = True
        task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupt)
    try:
        return await Runtime.start(settings)
    except asyncio.CancelledError:
        if not interrupted:
            raise
        task.uncancel()
        return None
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(sig)


def start_line(settings: Settings, sock: socket.socket, graphiql_problem: object) -> str:
    host, port = sock.getsockname()[:2]
    base = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    if not settings.graphiql:
        where = f"GraphQL: {base}/graphql; GraphiQL is off"
    elif graphiql_problem is not None:
        where = f"GraphQL: {base}/graphql; GraphiQL is unavailable: {graphiql_problem}"
    else:
        where = f"GraphiQL: {base}/graphql"
    if settings.board:
        where = f"board: {base}/; {where}"
    return f"tickgraph listening on {base} ({where})"
