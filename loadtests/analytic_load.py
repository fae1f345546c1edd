"""Does the feed wait on subscribers under analytic load? A recorded day at max speed
into a real server, with and without four analytic subscriptions, in the same run.

    python -m loadtests.analytic_load                  # 3 runs of each, JSON on stdout
    python -m loadtests.analytic_load --runs 1 --out /tmp/analytic.json

The scenario of issue 13: the AMZN day (2012-06-21) replayed over the Polygon protocol
as fast as the server reads it, into ``tickgraph serve`` with ``TICKGRAPH_SYMBOLS=AMZN``,
and four subscriptions open on one connection: three ``indicators(symbol: "AMZN", ...)``
of 14 indicators each (M1, M5, and M1 with other parameters, the specs written inline
as the client in the issue did) and ``bars(symbol: "AMZN", timeframe: S1)``. The
subscriber reads everything it is sent.

Each run starts a fresh server (its own embedded database) and a fresh replay held at
its first frame until the subscriptions are in place; then the replay is released and
the run lasts until the server has read the whole day: the replay has sent its last
frame and nothing it sent waits unread, in its buffers or the kernel's (the server
applies each frame as it reads it), or the replay dropped it as a slow consumer.
``ingest_events_per_s`` is the events the server accepted (``feedStatus.events``, read
once at the end: anonymous callers have a request rate) divided by the time from
release to that moment. The figure of merit is ``ratio``: the median rate with the four
subscriptions as a fraction of the median rate without any, runs alternating so both
see the same machine. On a machine shared with other work the rates swing with its
load; ``cpu_ratio`` (the server's CPU time per event, without over with) says the same
with far less noise. The replay drops a server that makes it wait more than 10 s (as
``tickgraph replay`` does); ``slow_consumer_dropped`` says if it happened.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import queue
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from loadtests.fanout_server import sample_process, start_tickgraph, upstream_backlog
from server.serving import loop_factory
from streams.events import MarketEvent
from streams.polygon_server import PolygonProtocolServer, RecordingSource

DEFAULT_RECORDING = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "polygon-replay-AMZN-2012-06-21.jsonl.gz"
)
SYMBOL = "AMZN"
#: How often the replay's backlog is read while the day plays.
POLL_S = 0.01
RUN_TIMEOUT_S = 600.0

_SPECS_A = (
    "{kind: SMA, period: 5}",
    "{kind: SMA, period: 20}",
    "{kind: SMA, period: 50}",
    "{kind: EMA, period: 9}",
    "{kind: EMA, period: 21}",
    "{kind: WMA, period: 10}",
    "{kind: RSI, period: 14}",
    "{kind: MACD, fast: 12, slow: 26, signal: 9}",
    "{kind: BBANDS, period: 20, stdDev: 2}",
    "{kind: ATR, period: 14}",
    "{kind: STOCH, kPeriod: 14, kSmooth: 3, dPeriod: 3}",
    "{kind: VWAP}",
    "{kind: ADX, period: 14}",
    "{kind: DONCHIAN, period: 20}",
)
_SPECS_B = (
    "{kind: SMA, period: 10}",
    "{kind: SMA, period: 30}",
    "{kind: SMA, period: 100}",
    "{kind: EMA, period: 12}",
    "{kind: EMA, period: 26}",
    "{kind: WMA, period: 20}",
    "{kind: RSI, period: 7}",
    "{kind: MACD, fast: 5, slow: 35, signal: 5}",
    "{kind: BBANDS, period: 10, stdDev: 1.5}",
    "{kind: ATR, period: 7}",
    "{kind: STOCH, kPeriod: 5, kSmooth: 3, dPeriod: 3}",
    "{kind: OBV}",
    "{kind: ADX, period: 7}",
    "{kind: DONCHIAN, period: 55}",
)
_VALUE_FIELDS = "symbol timeframe key ready final barStart coldStart outputs { name value }"


def indicators_document(timeframe: str, specs: Sequence[str]) -> str:
    return (
        f'subscription {{ indicators(symbol: "{SYMBOL}", timeframe: {timeframe}, '
        f"specs: [{', '.join(specs)}]) {{ {_VALUE_FIELDS} }} }}"
    )


BARS = (
    f'subscription {{ bars(symbol: "{SYMBOL}", timeframe: S1) {{ kind snapshot '
    "bar { symbol timeframe start end open high low close volume vwap trades final revision } "
    "gap { from to filled bars } } }"
)
#: The issue's four subscriptions.
SUBSCRIPTIONS = {
    "indicators_m1": indicators_document("M1", _SPECS_A),
    "indicators_m5": indicators_document("M5", _SPECS_A),
    "indicators_m1_b": indicators_document("M1", _SPECS_B),
    "bars_s1": BARS,
}


class GatedSource:
    """A recording at max speed whose first frame waits for ``release``."""

    hold_when_paused = True
    unpaced = True

    def __init__(self, path: Path) -> None:
        self._inner = RecordingSource(path, speed=None, loop=False)
        self.gate = asyncio.Event()
        self.released_at: float | None = None
        self.finished_at: float | None = None

    async def next_frame(self) -> Sequence[MarketEvent] | None:
        await self.gate.wait()
        frame = await self._inner.next_frame()
        if frame is None and self.finished_at is None:
            self.finished_at = time.monotonic()
        return frame

    def release(self) -> None:
        self.released_at = time.monotonic()
        self.gate.set()

    def pause(self) -> None:
        self._inner.pause()

    def on_subscribe(self, channel: str, symbol: str) -> None:
        """A recording has what it has."""


def _read_subscriptions(
    ws_url: str, documents: dict[str, str], ready: Any, stop: Any, results: Any
) -> None:
    """The subscriber, in a process of its own (so that reading does not slow the
    replay): subscribe, say so, read everything until told to stop, report."""
    with asyncio.Runner(loop_factory=loop_factory("uvloop")) as runner:
        runner.run(_subscriber(ws_url, documents, ready, stop, results))


async def _subscriber(
    ws_url: str, documents: dict[str, str], ready: Any, stop: Any, results: Any
) -> None:
    messages: Counter[str] = Counter()
    errors: list[Any] = []
    async with connect(
        ws_url, subprotocols=[Subprotocol("graphql-transport-ws")], max_size=None
    ) as ws:
        await ws.send(orjson.dumps({"type": "connection_init", "payload": {}}).decode())
        ack = orjson.loads(await asyncio.wait_for(ws.recv(), 30.0))
        if ack.get("type") != "connection_ack":
            errors.append(ack)
        for op, query in documents.items():
            message = {"id": op, "type": "subscribe", "payload": {"query": query}}
            await ws.send(orjson.dumps(message).decode())
        ready.set()

        async def read() -> None:
            with contextlib.suppress(ConnectionClosed):
                async for raw in ws:
                    msg = orjson.loads(raw)
                    kind = msg.get("type")
                    if kind == "ping":
                        await ws.send(orjson.dumps({"type": "pong"}).decode())
                    elif kind == "next":
                        messages[msg["id"]] += 1
                        if "errors" in msg["payload"]:
                            errors.append(msg["payload"]["errors"])
                    elif kind in ("error", "complete"):
                        errors.append(msg)

        reader = asyncio.create_task(read())
        await asyncio.to_thread(stop.wait)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    results.put({"messages": dict(messages), "errors": errors[:3]})


@contextlib.asynccontextmanager
async def subscribed(ws_url: str, documents: dict[str, str]) -> AsyncIterator[dict[str, Any]]:
    """A subscriber process holding ``documents``; what it read, once done."""
    ctx = multiprocessing.get_context("spawn")
    ready, stop, results = ctx.Event(), ctx.Event(), ctx.Queue()
    process = ctx.Process(
        target=_read_subscriptions, args=(ws_url, documents, ready, stop, results)
    )
    process.start()
    report: dict[str, Any] = {}
    try:
        if not await asyncio.to_thread(ready.wait, 60.0):
            raise RuntimeError("the subscriber did not subscribe")
        yield report
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            report.update(await asyncio.to_thread(results.get, True, 30.0))
        await asyncio.to_thread(process.join, 10.0)
        if process.is_alive():
            process.kill()


async def graphql(http: httpx.AsyncClient, query: str) -> dict[str, Any]:
    response = await http.post("/graphql", json={"query": query})
    body: dict[str, Any] = response.json()
    if body.get("errors"):
        raise RuntimeError(f"{query}: {body['errors']}")
    data: dict[str, Any] = body["data"]
    return data


async def subscribers_of(http: httpx.AsyncClient, symbol: str) -> int:
    data = await graphql(http, "{ symbols { symbol subscribers } }")
    return next((s["subscribers"] for s in data["symbols"] if s["symbol"] == symbol), 0)


async def ingested(http: httpx.AsyncClient) -> int:
    return int((await graphql(http, "{ feedStatus { events } }"))["feedStatus"]["events"])


@contextlib.asynccontextmanager
async def profiling(pid: int, out: Path | None) -> AsyncIterator[None]:
    """py-spy (when asked for, and installed) samples ``pid`` meanwhile: collapsed
    stacks in ``out``, for flame graphs or grep."""
    if out is None:
        yield
        return
    spy = await asyncio.create_subprocess_exec(
        "py-spy", "record", "--format", "raw", "--rate", "250", "--pid", str(pid),
        "--output", str(out), stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await asyncio.sleep(1.0)  # attached before the day starts
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        await spy.wait()


async def one_run(
    recording: Path, documents: dict[str, str], profile: Path | None = None
) -> dict[str, Any]:
    """The whole day into a fresh server with ``documents`` subscribed (maybe none)."""
    source = GatedSource(recording)
    upstream = await PolygonProtocolServer(source, host="127.0.0.1", port=0).start()
    try:
        with tempfile.TemporaryDirectory(prefix="analytic-") as data_dir:
            async with (
                start_tickgraph(upstream.url, (SYMBOL,), Path(data_dir)) as target,
                httpx.AsyncClient(base_url=target.http_url, timeout=30.0) as http,
                contextlib.AsyncExitStack() as stack,
            ):
                read: dict[str, Any] | None = None
                if documents:
                    read = await stack.enter_async_context(subscribed(target.ws_url, documents))
                    deadline = time.monotonic() + 60.0
                    while await subscribers_of(http, SYMBOL) < len(documents):
                        if time.monotonic() > deadline:
                            raise RuntimeError("the subscriptions did not all start")
                        await asyncio.sleep(0.2)
                before = await ingested(http)
                await stack.enter_async_context(profiling(target.pid, profile))
                cpu0 = sample_process(target.pid)
                source.release()
                assert source.released_at is not None
                while source.finished_at is None or upstream_backlog(upstream) > 0:
                    if upstream.slow_consumers_dropped:
                        break
                    if time.monotonic() - source.released_at > RUN_TIMEOUT_S:
                        raise TimeoutError("the day did not finish in time")
                    await asyncio.sleep(POLL_S)
                done = time.monotonic()
                cpu1 = sample_process(target.pid)
                elapsed = done - source.released_at
                # The last frames read may still be in the client library's queue.
                await asyncio.sleep(0.5)
                events = await ingested(http) - before
                report: dict[str, Any] = {
                    "events": events,
                    "elapsed_s": round(elapsed, 3),
                    "ingest_events_per_s": round(events / elapsed) if elapsed > 0 else None,
                    "replay_sent": upstream.events_sent,
                    "slow_consumer_dropped": upstream.slow_consumers_dropped > 0,
                    # More than one: the server's feed connection broke and came back.
                    "feed_connections": upstream.connections,
                    "server_cpu_s": round(cpu1.cpu_s - cpu0.cpu_s, 2) if cpu0 and cpu1 else None,
                }
            if read is not None:
                report.update(read)  # the subscriber process is done by now
            return report
    finally:
        await upstream.close()


async def run(recording: Path, runs: int, profile: Path | None = None) -> dict[str, Any]:
    baseline: list[dict[str, Any]] = []
    loaded: list[dict[str, Any]] = []
    for n in range(runs):
        for label, documents, into in (("none", {}, baseline), ("four", SUBSCRIPTIONS, loaded)):
            report = await one_run(recording, documents, profile if documents else None)
            print(
                f"analytic_load run {n + 1}/{runs} {label}: "
                f"{report['ingest_events_per_s']} events/s, {report['events']} events "
                f"in {report['elapsed_s']} s, dropped={report['slow_consumer_dropped']}, "
                f"feed connections={report['feed_connections']}",
                file=sys.stderr,
                flush=True,
            )
            into.append(report)

    def median_rate(reports: list[dict[str, Any]]) -> float:
        return statistics.median(r["ingest_events_per_s"] or 0 for r in reports)

    def median_cpu_us(reports: list[dict[str, Any]]) -> float | None:
        costs = [
            r["server_cpu_s"] / r["events"] * 1e6
            for r in reports
            if r["server_cpu_s"] and r["events"]
        ]
        return round(statistics.median(costs), 2) if costs else None

    base, four = median_rate(baseline), median_rate(loaded)
    base_cpu, four_cpu = median_cpu_us(baseline), median_cpu_us(loaded)
    return {
        "scenario": "AMZN 2012-06-21 at max speed, TICKGRAPH_SYMBOLS=AMZN",
        "subscriptions": SUBSCRIPTIONS,
        "no_subscribers": {"median_events_per_s": base, "runs": baseline},
        "four_subscriptions": {"median_events_per_s": four, "runs": loaded},
        "ratio": round(four / base, 3) if base else None,
        "target_ratio": 0.5,
        # The server's CPU time per event ingested: much less sensitive than rates to
        # whatever else the machine does meanwhile. none / four is the ingest rate with
        # the subscriptions as a fraction of the rate without, for a server that has
        # the CPU to itself.
        "server_cpu_us_per_event": {"none": base_cpu, "four": four_cpu},
        "cpu_ratio": round(base_cpu / four_cpu, 3) if base_cpu and four_cpu else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtests.analytic_load", description=__doc__)
    p.add_argument("--recording", type=Path, default=DEFAULT_RECORDING)
    p.add_argument("--runs", type=int, default=3, help="runs of each case (default 3)")
    p.add_argument("--out", type=Path, help="also write the JSON here")
    p.add_argument(
        "--profile",
        type=Path,
        help="py-spy the server during the runs with subscriptions: collapsed stacks here",
    )
    args = p.parse_args(argv)
    if not args.recording.is_file():
        p.error(f"no such recording: {args.recording}")
    if not 1 <= args.runs <= 20:
        p.error("--runs: 1 to 20")
    # The replay runs on uvloop as the server does: the faster it can play, the more the
    # no-subscriber rate says about the server rather than about the replay.
    with asyncio.Runner(loop_factory=loop_factory("uvloop")) as runner:
        report = runner.run(run(args.recording, args.runs, args.profile))
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
