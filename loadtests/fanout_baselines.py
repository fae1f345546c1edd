"""Baseline servers for the fan-out load test, each in its own process:

    python -m loadtests.fanout_baselines raw --upstream ws://127.0.0.1:PORT/stocks --symbols A,B
    python -m loadtests.fanout_baselines strawberry --upstream ... --symbols ... --port 0

- ``raw`` (``loadtests.fanout_baseline_raw``): no GraphQL, one orjson frame per quote and
  ``websockets.broadcast``: the ceiling of this stack.
- ``strawberry`` (``loadtests.fanout_baseline_strawberry``): a plain strawberry schema
  under uvicorn, one async generator per subscriber: the naive GraphQL path.

Both read quotes of ``--symbols`` from the Polygon-protocol replay at ``--upstream``,
serve graphql-transport-ws on ``/graphql`` (any path, for ``raw``) and
``GET /stats`` (JSON counters), and print ``... listening on http://127.0.0.1:PORT``
once the upstream subscription is acknowledged, which is what the harness waits for.
They run on uvloop, as tickgraph does by default (``--loop asyncio``: the standard
loop). SIGTERM or SIGINT stops them; losing the upstream exits with 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from http import HTTPStatus
from typing import Any

import orjson
import uvicorn
from starlette.types import Receive, Scope, Send
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from loadtests.fanout_baseline_feed import FeedError, FeedStats, open_feed, pump_feed
from loadtests.fanout_baseline_raw import RawFanout
from loadtests.fanout_baseline_strawberry import QUEUE_SIZE, BaselineGraphQL, Hub
from loadtests.fanout_clients import loop_factory

KINDS = ("raw", "strawberry")
PROTOCOL = Subprotocol("graphql-transport-ws")
EXIT_UPSTREAM_LOST = 2
#: Upstream frames the strawberry baseline reads per turn of its loop (see pump_feed).
STRAWBERRY_YIELD_EVERY = 64


def _log(text: str) -> None:
    print(f"fanout-baseline: {text}", file=sys.stderr, flush=True)


def _announce(kind: str, port: int) -> None:
    # The harness reads this line to find a port chosen with --port 0.
    print(f"fanout baseline {kind} listening on http://127.0.0.1:{port}", flush=True)


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def _until_first(*aws: Awaitable[Any]) -> asyncio.Future[Any]:
    """Run ``aws`` until the first one ends; cancel the rest; return the first."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    return done.pop()


def _upstream_outcome(first: asyncio.Future[Any], feed: asyncio.Future[Any]) -> int:
    if first is not feed:
        return 0
    exc = first.exception()
    _log(f"upstream lost: {type(exc).__name__}: {exc}" if exc else "upstream ended")
    return EXIT_UPSTREAM_LOST


# --- raw ---------------------------------------------------------------------------------


async def run_raw(args: argparse.Namespace) -> int:
    fanout = RawFanout()
    feed_stats = FeedStats()
    stop = asyncio.Event()
    _stop_on_signals(stop)

    def stats_route(connection: ServerConnection, request: Request) -> Response | None:
        if request.path.split("?")[0] != "/stats":
            return None
        body = orjson.dumps({"kind": "raw", **fanout.stats(), "feed": vars(feed_stats)})
        headers = Headers(
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        )
        return Response(HTTPStatus.OK.value, "OK", headers, body)

    upstream = await open_feed(args.upstream, args.symbols)
    async with serve(
        fanout.handle,
        "127.0.0.1",
        args.port,
        subprotocols=[PROTOCOL],
        compression=None,
        max_size=64 * 1024,
        process_request=stats_route,
        backlog=2048,
    ) as server:
        feed = asyncio.ensure_future(pump_feed(upstream, fanout.on_quote, feed_stats))
        _announce("raw", server.sockets[0].getsockname()[1])
        first = await _until_first(feed, stop.wait(), fanout.sweep_forever())
    await upstream.close()
    return _upstream_outcome(first, feed)


# --- strawberry --------------------------------------------------------------------------


def _with_stats(app: Callable[[Scope, Receive, Send], Awaitable[None]], stats: Any) -> Any:
    """``GET /stats`` answered here, everything else by ``app``."""

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/stats":
            body = orjson.dumps(stats())
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await app(scope, receive, send)

    return asgi


class _Uvicorn(uvicorn.Server):
    """SIGTERM/SIGINT stop serving and the process exits 0 (uvicorn would re-raise the
    signal after shutting down, so the harness would see a death by signal)."""

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


async def run_strawberry(args: argparse.Namespace) -> int:
    hub = Hub(args.queue_size)
    feed_stats = FeedStats()

    def stats() -> dict[str, Any]:
        return {"kind": "strawberry", **hub.stats(), "feed": vars(feed_stats)}

    upstream = await open_feed(args.upstream, args.symbols)
    config = uvicorn.Config(
        _with_stats(BaselineGraphQL(hub), stats),
        host="127.0.0.1",
        port=args.port,
        ws="websockets-sansio",
        lifespan="off",
        log_level="warning",
        access_log=False,
        backlog=2048,
        timeout_graceful_shutdown=2,
    )
    server = _Uvicorn(config)
    serving = asyncio.ensure_future(server.serve())
    while not server.started and not serving.done():  # noqa: ASYNC110 - no start event
        await asyncio.sleep(0.02)
    if not server.started:
        await upstream.close()
        return 3
    feed = asyncio.ensure_future(
        pump_feed(upstream, hub.on_quote, feed_stats, yield_every=STRAWBERRY_YIELD_EVERY)
    )
    _announce("strawberry", server.servers[0].sockets[0].getsockname()[1])
    first = await _until_first(feed, serving)
    if first is feed:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await serving
    await upstream.close()
    return _upstream_outcome(first, feed)


# --- command line ------------------------------------------------------------------------


def _symbols(raw: str) -> list[str]:
    symbols = [s.strip() for s in raw.split(",") if s.strip()]
    if not symbols:
        raise argparse.ArgumentTypeError("at least one symbol")
    return symbols


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m loadtests.fanout_baselines",
        description=__doc__.split("\n\n")[0] if __doc__ else "",
    )
    p.add_argument("kind", choices=KINDS)
    p.add_argument("--upstream", required=True, help="Polygon-protocol ws:// URL (…/stocks)")
    p.add_argument("--symbols", type=_symbols, required=True, help="comma-separated")
    p.add_argument("--port", type=int, default=0, help="0: any free port (default)")
    p.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="uvloop (as tickgraph by default; asyncio's loop if uvloop is not installed)",
    )
    p.add_argument(
        "--queue-size",
        type=int,
        default=QUEUE_SIZE,
        help=f"strawberry: quotes queued per subscriber before dropping the oldest ({QUEUE_SIZE})",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run = run_raw if args.kind == "raw" else run_strawberry
    try:
        with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
            return runner.run(run(args))
    except (OSError, ConnectionClosed, FeedError, TimeoutError) as exc:
        _log(f"failed: {type(exc).__name__}: {exc}")
        return 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
