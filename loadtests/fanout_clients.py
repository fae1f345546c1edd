"""Subscriber processes of the fan-out load test: many graphql-transport-ws connections
per process, one asyncio loop each, on ``loadtests.fanout_wire`` (or ``websockets`` when
asked for permessage-deflate) + ``orjson``.

Each process gets a ``ProcessPlan`` (its connections: symbols, source address, whether
it reads at all, quotes or batches), opens them, reports ``ready`` once every connection
has its first message or has failed, then measures the windows the parent publishes in
a shared array ``[start, end, index]`` (epoch seconds) and finally sends one ``result``
message with one set of figures per window. Progress goes to the same queue about once a
second.

In a window, two things are counted for every non-snapshot quote:

- by the client's clock, the quotes that *arrived* during the window: ``arrivals`` (the
  throughput) and their latency (arrival minus ``receivedAt``: the server's receipt of
  the upstream frame to the subscriber reading it, queueing on both sides included;
  with ``feed_clock`` also arrival minus ``exchangeTime``: from the replay sending it,
  so including any backlog in front of the server, to the millisecond);
- by the server's ``receivedAt``, the quotes the server *received* during the window,
  whenever they arrive before the process stops: per symbol and distinct, which the
  parent compares with what the replay offered.

A saturated server that queues shows as stale arrivals (high latency); one that
conflates or drops shows as received quotes that never arrive.

Works against any server with a ``quotes(symbols: [String!]!)`` subscription whose items
carry ``symbol``, ``receivedAt`` (epoch milliseconds) and ``snapshot``; batch plans use
``quoteBatches(symbols, windowMs) { droppedBefore quotes { ... } }`` and count each quote
in a batch as one delivery.

Slow connections (``ConnectionPlan.slow``) subscribe, take their first message, then
stop reading (``pause_reading`` on a socket with a tiny ``SO_RCVBUF``), holding the
connection open until the end: the server's send buffers fill and stay full.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import SynchronizedArray
from multiprocessing.synchronize import Event as MpEvent
from typing import Any, Protocol

import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.typing import Subprotocol

from loadtests.fanout_wire import HandshakeError, open_wire
from server.serving import loop_factory

PROTOCOL = Subprotocol("graphql-transport-ws")
QUOTE_FIELDS = "symbol receivedAt snapshot"
#: With the feed's own clock: ``exchangeTime`` is when the harness's replay sent the quote.
TIMED_QUOTE_FIELDS = "symbol receivedAt exchangeTime snapshot"


def quotes_query(timed: bool, variant: int | None = None) -> str:
    """The subscribers' document; a ``variant`` adds a field under an alias of its own,
    so that no two variants are one group or share a compiled plan."""
    fields = TIMED_QUOTE_FIELDS if timed else QUOTE_FIELDS
    if variant is not None:
        fields += f" v{variant}: tape"
    return f"subscription($s: [String!]!) {{ quotes(symbols: $s) {{ {fields} }} }}"


def batches_query(timed: bool) -> str:
    fields = TIMED_QUOTE_FIELDS if timed else QUOTE_FIELDS
    return (
        "subscription($s: [String!]!, $w: Int!) { quoteBatches(symbols: $s, windowMs: $w) "
        f"{{ droppedBefore quotes {{ {fields} }} }} }}"
    )


QUOTES = quotes_query(False)
BATCHES = batches_query(False)
#: Relative width of a latency bucket: percentiles are exact to within 1 %.
GROWTH = 1.01
_INV_LOG_GROWTH = 1.0 / math.log(GROWTH)
_BUCKETS = int(math.log(1e9) * _INV_LOG_GROWTH) + 2  # 1 µs .. 1000 s
MAX_ERRORS_KEPT = 5
#: Receive buffer of a slow connection: the kernel's minimum, near enough.
SLOW_RCVBUF = 4096


class Queue(Protocol):
    def put(self, obj: Any) -> None: ...


class LatencyHistogram:
    """Log-bucketed latencies in microseconds; mergeable and cheap to pickle."""

    def __init__(self) -> None:
        self.counts = [0] * _BUCKETS
        self.count = 0
        self.max_us = 0.0
        self.negative = 0  # client clock before the server's stamp (clock skew)

    def record(self, latency_us: float) -> None:
        if latency_us < 0:
            self.negative += 1
            latency_us = 0.0
        index = int(math.log(latency_us) * _INV_LOG_GROWTH) if latency_us >= 1.0 else 0
        self.counts[min(index, _BUCKETS - 1)] += 1
        self.count += 1
        self.max_us = max(self.max_us, latency_us)

    def merge(self, other: LatencyHistogram) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.count += other.count
        self.max_us = max(self.max_us, other.max_us)
        self.negative += other.negative

    def percentile_ms(self, p: float) -> float | None:
        """The upper bound of the bucket holding the ``p``-th percentile, in ms."""
        if self.count == 0:
            return None
        rank = math.ceil(self.count * p / 100.0)
        seen = 0
        for index, n in enumerate(self.counts):
            seen += n
            if seen >= rank:
                return round(min(GROWTH ** (index + 1), self.max_us) / 1000.0, 3)
        return round(self.max_us / 1000.0, 3)

    def summary(self) -> dict[str, float | int | None]:
        return {
            "count": self.count,
            "p50": self.percentile_ms(50),
            "p90": self.percentile_ms(90),
            "p99": self.percentile_ms(99),
            "p99_9": self.percentile_ms(99.9),
            "max": round(self.max_us / 1000.0, 3) if self.count else None,
            "negative_clamped": self.negative,
        }


@dataclass(frozen=True, slots=True)
class ConnectionPlan:
    symbols: tuple[str, ...]
    #: Source address to bind (spreads per-IP quotas over 127.0.0.0/8), or None.
    local_ip: str | None
    #: Subscribe, take the first message, then never read again.
    slow: bool = False
    #: Subscribe to ``quoteBatches`` with this window instead of ``quotes``.
    batch_window_ms: int | None = None
    #: Also select ``exchangeTime`` and measure latency from it (the harness's replay
    #: stamps quotes with the time it sends them).
    feed_clock: bool = False
    #: A document of its own (see ``quotes_query``).
    variant: int | None = None


@dataclass(frozen=True, slots=True)
class ProcessPlan:
    index: int
    url: str
    connections: tuple[ConnectionPlan, ...]
    connect_concurrency: int = 50
    connect_timeout_s: float = 30.0
    deflate: bool = False
    #: Extra ``connection_init`` payload (e.g. a token).
    init_payload: dict[str, Any] = field(default_factory=dict)
    #: The subscribers' event loop: "uvloop" (when installed) or "asyncio".
    loop: str = "uvloop"


@dataclass
class WindowStats:
    """What one process saw during one measurement window."""

    hist: LatencyHistogram = field(default_factory=LatencyHistogram)  # from receivedAt
    feed_hist: LatencyHistogram = field(default_factory=LatencyHistogram)  # from exchangeTime
    arrivals: int = 0  # quotes that arrived in the window (client clock)
    messages: int = 0  # messages that arrived in the window (a batch is one)
    dropped_before: int = 0  # sum of droppedBefore of batches that arrived in the window
    deliveries_in_window: Counter[str] = field(default_factory=Counter)  # by receivedAt
    distinct: set[tuple[str, float]] = field(default_factory=set)  # by receivedAt

    def result(self) -> dict[str, Any]:
        return {
            "hist": self.hist,
            "feed_hist": self.feed_hist,
            "arrivals": self.arrivals,
            "messages": self.messages,
            "dropped_before": self.dropped_before,
            "deliveries_in_window": dict(self.deliveries_in_window),
            "distinct": self.distinct,
        }


@dataclass
class _Stats:
    deliveries_total: int = 0  # every quote, any time
    snapshots: int = 0
    connected: int = 0
    subscribed: int = 0  # got a first message
    rejected: int = 0  # error or complete before a first message
    connect_failures: int = 0
    closed_by_server: int = 0
    graphql_errors: int = 0
    errors: list[str] = field(default_factory=list)
    #: Connections past their start: subscribed, refused, failed or gone (each once).
    settled: int = 0
    windows: dict[int, WindowStats] = field(default_factory=dict)

    def error(self, text: str) -> None:
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(text[:300])

    def connect_failed(self, exc: BaseException) -> None:
        self.connect_failures += 1
        self.settled += 1
        self.error(f"connect: {type(exc).__name__}: {exc}")


class _Window:
    """The parent's current window, copied out of shared memory now and then so the
    receive path takes no lock per message. Bounds in epoch ms."""

    def __init__(self) -> None:
        self.index = -1
        self.start_ms = math.inf
        self.end_ms = -math.inf
        self.stats = WindowStats()  # a sink until the first window


class Subscriber:
    """One connection's graphql-transport-ws conversation and its counting. Transport
    agnostic: ``on_message`` gets each whole message, ``send`` writes one."""

    def __init__(
        self,
        conn: ConnectionPlan,
        plan: ProcessPlan,
        stats: _Stats,
        window: _Window,
        *,
        send: Callable[[bytes], None],
        pause: Callable[[], None],
    ) -> None:
        self.conn = conn
        self.plan = plan
        self.stats = stats
        self.window = window
        self.send = send
        self.pause = pause
        self.first = True
        self.settled = False
        self.acked = asyncio.get_running_loop().create_future()
        self.finished = asyncio.get_running_loop().create_future()

    def start(self) -> None:
        """Send ``connection_init``; ``subscribe`` follows the ack."""
        init = {"type": "connection_init", "payload": self.plan.init_payload}
        self.send(orjson.dumps(init))

    def _subscribe(self) -> None:
        conn = self.conn
        if conn.batch_window_ms is None:
            query = quotes_query(conn.feed_clock, conn.variant)
            payload: dict[str, Any] = {"query": query, "variables": {"s": list(conn.symbols)}}
        else:
            variables = {"s": list(conn.symbols), "w": conn.batch_window_ms}
            payload = {"query": batches_query(conn.feed_clock), "variables": variables}
        self.send(orjson.dumps({"id": "1", "type": "subscribe", "payload": payload}))

    def settle(self) -> None:
        """This connection will not change the ready count again."""
        if not self.settled:
            self.settled = True
            self.stats.settled += 1

    def _end(self, text: str, *, rejected: bool) -> None:
        stats = self.stats
        stats.error(text)
        if rejected and self.first:
            stats.rejected += 1
        self.first = False
        self.settle()
        if not self.finished.done():
            self.finished.set_result(None)

    def lost(self, text: str) -> None:
        """The server closed the connection (or it broke)."""
        self.stats.closed_by_server += 1
        self.stats.error(text)
        self.first = False
        self.settle()

    def on_message(self, raw: bytes) -> None:
        now_ms = time.time() * 1000.0
        msg = orjson.loads(raw)
        kind = msg.get("type")
        if kind == "next":
            payload = msg["payload"]
            data = payload.get("data")
            if payload.get("errors") or not data:
                self.stats.graphql_errors += 1
                self._end(f"next: {payload}", rejected=True)
                return
            if self.first:
                self.first = False
                self.stats.subscribed += 1
                self.settle()
                if self.conn.slow:
                    self.pause()
            if self.conn.batch_window_ms is None:
                self._quote(data["quotes"], now_ms)
            else:
                self._batch(data["quoteBatches"], now_ms)
        elif kind == "ping":
            self.send(b'{"type":"pong"}')
        elif kind == "connection_ack":
            if not self.acked.done():
                self.acked.set_result(None)
            self._subscribe()
        elif kind == "error":
            self.stats.graphql_errors += 1
            self._end(f"error: {msg.get('payload')}", rejected=True)
        elif kind == "complete":
            self._end("server completed the subscription", rejected=True)

    def _quote(self, quote: dict[str, Any], now_ms: float) -> None:
        stats = self.stats
        stats.deliveries_total += 1
        if quote["snapshot"]:
            stats.snapshots += 1
            return
        window = self.window
        ws = window.stats
        received_at: float = quote["receivedAt"]
        if window.start_ms <= now_ms <= window.end_ms:
            ws.arrivals += 1
            ws.messages += 1
            ws.hist.record((now_ms - received_at) * 1000.0)
            if self.conn.feed_clock:
                ws.feed_hist.record((now_ms - quote["exchangeTime"]) * 1000.0)
        if window.start_ms <= received_at <= window.end_ms:
            symbol: str = quote["symbol"]
            ws.deliveries_in_window[symbol] += 1
            ws.distinct.add((symbol, received_at))

    def _batch(self, batch: dict[str, Any], now_ms: float) -> None:
        stats = self.stats
        window = self.window
        ws = window.stats
        arrived = window.start_ms <= now_ms <= window.end_ms
        if arrived:
            ws.messages += 1
            ws.dropped_before += batch.get("droppedBefore") or 0
        start_ms, end_ms = window.start_ms, window.end_ms
        record = ws.hist.record
        record_feed = ws.feed_hist.record if self.conn.feed_clock else None
        in_window = ws.deliveries_in_window
        distinct = ws.distinct
        for quote in batch["quotes"]:
            stats.deliveries_total += 1
            if quote["snapshot"]:
                stats.snapshots += 1
                continue
            received_at: float = quote["receivedAt"]
            if arrived:
                ws.arrivals += 1
                record((now_ms - received_at) * 1000.0)
                if record_feed is not None:
                    record_feed((now_ms - quote["exchangeTime"]) * 1000.0)
            if start_ms <= received_at <= end_ms:
                symbol: str = quote["symbol"]
                in_window[symbol] += 1
                distinct.add((symbol, received_at))


async def _wire_connection(
    plan: ProcessPlan,
    conn: ConnectionPlan,
    *,
    stats: _Stats,
    window: _Window,
    gate: asyncio.Semaphore,
    ready: asyncio.Event,
) -> None:
    async with gate:
        try:
            client = await open_wire(
                plan.url,
                PROTOCOL,
                local_ip=conn.local_ip,
                rcvbuf=SLOW_RCVBUF if conn.slow else None,
                timeout_s=plan.connect_timeout_s,
            )
        except (OSError, TimeoutError, HandshakeError, ValueError) as exc:
            stats.connect_failed(exc)
            return
        sub = Subscriber(
            conn, plan, stats, window, send=client.send_text, pause=client.pause_reading
        )
        client.reader.on_message = sub.on_message
        try:
            sub.start()
            async with asyncio.timeout(plan.connect_timeout_s):
                await asyncio.wait((sub.acked, client.closed), return_when=asyncio.FIRST_COMPLETED)
            if not sub.acked.done():
                raise ConnectionError("closed before connection_ack")
        except (OSError, TimeoutError) as exc:
            client.abort()
            sub.settled = True
            stats.connect_failed(exc)
            return
    stats.connected += 1
    try:
        await asyncio.wait((sub.finished, client.closed), return_when=asyncio.FIRST_COMPLETED)
        if client.closed.done() and client.closed.result():
            sub.lost("closed by the server")
        await asyncio.Future()  # hold until cancelled
    finally:
        if conn.slow:
            client.abort()  # its buffers are full: a close handshake could not get through
        else:
            client.close()


async def _websockets_connection(
    plan: ProcessPlan,
    conn: ConnectionPlan,
    *,
    stats: _Stats,
    window: _Window,
    gate: asyncio.Semaphore,
    ready: asyncio.Event,
) -> None:
    """The same on the ``websockets`` client, which speaks permessage-deflate."""
    extra: dict[str, Any] = {}
    if conn.local_ip is not None:
        extra["local_addr"] = (conn.local_ip, 0)
    async with gate:
        try:
            ws = await connect(
                plan.url,
                subprotocols=[PROTOCOL],
                open_timeout=plan.connect_timeout_s,
                max_queue=1 if conn.slow else None,
                ping_interval=None,
                compression="deflate" if plan.deflate else None,
                max_size=None,
                close_timeout=2,
                **extra,
            )
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            stats.connect_failed(exc)
            return
    stats.connected += 1
    sending: set[asyncio.Task[None]] = set()

    def send(data: bytes) -> None:
        task = asyncio.create_task(ws.send(data, text=True))
        sending.add(task)
        task.add_done_callback(sending.discard)

    def pause() -> None:
        if ws.transport is not None:
            ws.transport.pause_reading()

    sub = Subscriber(conn, plan, stats, window, send=send, pause=pause)
    sub.start()
    try:
        async for raw in ws:
            sub.on_message(raw if isinstance(raw, bytes) else raw.encode())
            if sub.finished.done() or (conn.slow and not sub.first):
                break
        await asyncio.Future()  # hold until cancelled
    except ConnectionClosed as exc:
        if not ready.is_set() or exc.rcvd is not None:
            sub.lost(f"closed: {exc}")
    finally:
        if conn.slow and ws.transport is not None:
            ws.transport.abort()
        else:
            await ws.close()


async def _watch(
    shared_window: SynchronizedArray[float],
    window: _Window,
    *,
    stop: MpEvent,
    queue: Queue,
    plan: ProcessPlan,
    stats: _Stats,
) -> None:
    """Copy the window in, send progress out, return once told to stop."""
    last_progress = 0.0
    while not stop.is_set():
        start, end, index = shared_window[0], shared_window[1], int(shared_window[2])
        if index >= 0 and index != window.index:
            window.stats = stats.windows.setdefault(index, WindowStats())
            window.index = index
            window.start_ms, window.end_ms = start * 1000.0, end * 1000.0
        now = time.monotonic()
        if now - last_progress >= 1.0:
            last_progress = now
            queue.put(
                (
                    "progress",
                    plan.index,
                    {
                        "connected": stats.connected,
                        "subscribed": stats.subscribed,
                        "failed": stats.connect_failures + stats.rejected,
                        "deliveries": stats.deliveries_total,
                    },
                )
            )
        await asyncio.sleep(0.05)


async def _run(
    plan: ProcessPlan, shared_window: SynchronizedArray[float], stop: MpEvent, queue: Queue
) -> _Stats:
    stats = _Stats()
    window = _Window()
    gate = asyncio.Semaphore(plan.connect_concurrency)
    ready = asyncio.Event()
    connection = _websockets_connection if plan.deflate else _wire_connection
    tasks = [
        asyncio.create_task(connection(plan, c, stats=stats, window=window, gate=gate, ready=ready))
        for c in plan.connections
    ]
    watcher = asyncio.create_task(
        _watch(shared_window, window, stop=stop, queue=queue, plan=plan, stats=stats)
    )
    # Ready once every connection has its first message, was refused or failed.
    deadline = time.monotonic() + plan.connect_timeout_s + len(plan.connections) / 100.0
    while (  # noqa: ASYNC110 - counters updated by many tasks, polled here
        stats.settled < len(plan.connections) and time.monotonic() < deadline and not stop.is_set()
    ):
        await asyncio.sleep(0.05)
    ready.set()
    queue.put(("ready", plan.index, {"subscribed": stats.subscribed}))
    await watcher
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return stats


def run_process(
    plan: ProcessPlan, shared_window: SynchronizedArray[float], stop: MpEvent, queue: Queue
) -> None:
    """Entry point of one client process (``multiprocessing``, spawn start method)."""
    try:
        # uvloop for the subscribers too: each quote costs a client one readiness event,
        # one recv and one callback per socket, several times cheaper in libuv, which
        # leaves more of the machine to the server under test.
        with asyncio.Runner(loop_factory=loop_factory(plan.loop)) as runner:
            stats = runner.run(_run(plan, shared_window, stop, queue))
    except BaseException as exc:
        queue.put(("failed", plan.index, f"{type(exc).__name__}: {exc}"))
        raise
    queue.put(
        (
            "result",
            plan.index,
            {
                "windows": {k: w.result() for k, w in stats.windows.items()},
                "deliveries_total": stats.deliveries_total,
                "snapshots": stats.snapshots,
                "connected": stats.connected,
                "subscribed": stats.subscribed,
                "rejected": stats.rejected,
                "connect_failures": stats.connect_failures,
                "closed_by_server": stats.closed_by_server,
                "graphql_errors": stats.graphql_errors,
                "errors": stats.errors,
            },
        )
    )
