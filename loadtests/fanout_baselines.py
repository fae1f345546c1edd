"""Baseline servers for the fan-out load test, each in its own process:

    python -m loadtests.fanout_baselines raw --upstream ws://127.0.0.1:PORT/stocks --symbols A,B
    python -m loadtests.fanout_baselines strawberry --upstream ... --symbols ... --port 0

- ``raw`` (``loadtests.fanout_baseline_raw``): no GraphQL, one orjson frame per quote and
  ``websockets.broadcast``: the ceiling of this stack.
- ``strawberry`` (``loadtests.fanout_baseline_strawberry``): a plain strawberry schema
  under uvicorn, one async generator per subscriber: the naive GraphQL path.

Both read quotes of ``--symbols`` from the Polygon-protocol replay at ``--upstream``,
serve graphql-transport-ws on ``/graphql`` (any path, for ``raw``), serve their counters
(JSON) from a thread at the URL of a first ``stats on http://...`` line, and print
``... listening on http://127.0.0.1:PORT`` once the upstream subscription is
acknowledged, which is what the harness waits for.
They run on uvloop, as tickgraph does by default (``--loop asyncio``: the standard
loop). SIGTERM or SIGINT stops them; losing the upstream exits with 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import uvicorn
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from loadtests.fanout_baseline_feed import FeedError, FeedStats, open_feed, pump_feed
from loadtests.fanout_baseline_raw import RawFanout
from loadtests.fanout_baseline_strawberry import QUEUE_SIZE, BaselineGraphQL, Hub
from server.serving import GracefulServer, loop_factory

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


def serve_stats(stats: Callable[[], dict[str, Any]]) -> int:
    """Answer ``GET /stats`` with ``stats()`` as JSON from a thread of its own, on a free
    port announced as ``stats on http://127.0.0.1:PORT/stats``. Not on the server's
    loop: a saturated baseline would answer seconds late, just when its counters (what
    it dropped) matter. The counters are plain ints; reading them from another thread
    under the GIL is safe, and the thread wakes only when asked."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/stats":
                self.send_error(HTTPStatus.NOT_FOUND)
                return
            body = orjson.dumps(stats())
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, name="stats", daemon=True).start()
    port: int = server.server_address[1]
    print(f"stats on http://127.0.0.1:{port}/stats", flush=True)
    return port


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
    serve_stats(lambda: {"kind": "raw", **fanout.stats(), "feed": vars(feed_stats)})

    upstream = await open_feed(args.upstream, args.symbols)
    async with serve(
        fanout.handle,
        "127.0.0.1",
        args.port,
        subprotocols=[PROTOCOL],
        compression=None,
        max_size=64 * 1024,
        backlog=2048,
    ) as server:
        feed = asyncio.ensure_future(pump_feed(upstream, fanout.on_quote, feed_stats))
        _announce("raw", server.sockets[0].getsockname()[1])
        first = await _until_first(feed, stop.wait(), fanout.sweep_forever())
    await upstream.close()
    return _upstream_outcome(first, feed)


# --- strawberry --------------------------------------------------------------------------


async def run_strawberry(args: argparse.Namespace) -> int:
    hub = Hub(args.queue_size)
    feed_stats = FeedStats()

    serve_stats(lambda: {"kind": "strawberry", **hub.stats(), "feed": vars(feed_stats)})
    upstream = await open_feed(args.upstream, args.symbols)
    config = uvicorn.Config(
        BaselineGraphQL(hub),
        host="127.0.0.1",
        port=args.port,
        ws="websockets-sansio",
        lifespan="off",
        log_level="warning",
        access_log=False,
        backlog=2048,
        timeout_graceful_shutdown=2,
    )
    server = GracefulServer(config)
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
