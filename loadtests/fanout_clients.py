"""Subscriber processes of the fan-out load test: many graphql-transport-ws connections
per process, one asyncio loop each, on plain ``websockets`` + ``orjson``.

Each process gets a ``ProcessPlan`` (its connections: symbols and source address), opens
them, reports ``ready``, then measures every quote whose server receipt time
(``receivedAt``) falls inside the measurement window published by the parent in a
shared array, and finally sends one ``result`` message. Progress messages go to the
same queue about once a second.

Works against any server with a ``quotes(symbols: [String!]!)`` subscription whose
items carry ``symbol`` and ``receivedAt`` (epoch milliseconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import SynchronizedArray
from multiprocessing.synchronize import Event as MpEvent
from typing import Any, Protocol

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.typing import Subprotocol

PROTOCOL = Subprotocol("graphql-transport-ws")
QUOTES = "subscription($s: [String!]!) { quotes(symbols: $s) { symbol receivedAt snapshot } }"
#: Relative width of a latency bucket: percentiles are exact to within 1 %.
GROWTH = 1.01
_INV_LOG_GROWTH = 1.0 / math.log(GROWTH)
_BUCKETS = int(math.log(1e9) * _INV_LOG_GROWTH) + 2  # 1 µs .. 1000 s
MAX_ERRORS_KEPT = 5


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


@dataclass
class _Stats:
    hist: LatencyHistogram = field(default_factory=LatencyHistogram)
    deliveries_total: int = 0  # every quote message, any time
    deliveries_in_window: Counter[str] = field(default_factory=Counter)
    snapshots: int = 0
    distinct: set[tuple[str, float]] = field(default_factory=set)
    connected: int = 0
    subscribed: int = 0
    connect_failures: int = 0
    closed_by_server: int = 0
    graphql_errors: int = 0
    errors: list[str] = field(default_factory=list)

    def error(self, text: str) -> None:
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(text[:300])


class _Window:
    """The parent's measurement window, copied out of shared memory now and then so the
    receive path does not take a lock per message. Bounds in epoch ms."""

    def __init__(self) -> None:
        self.start_ms = math.inf
        self.end_ms = -math.inf


async def _connection(
    plan: ProcessPlan,
    conn: ConnectionPlan,
    *,
    stats: _Stats,
    window: _Window,
    gate: asyncio.Semaphore,
    ready: asyncio.Event,
) -> None:
    extra: dict[str, Any] = {}
    if conn.local_ip is not None:
        extra["local_addr"] = (conn.local_ip, 0)
    async with gate:
        try:
            ws = await connect(
                plan.url,
                subprotocols=[PROTOCOL],
                open_timeout=plan.connect_timeout_s,
                max_queue=None,
                ping_interval=None,
                compression="deflate" if plan.deflate else None,
                max_size=None,
                close_timeout=2,
                **extra,
            )
            await ws.send(
                orjson.dumps({"type": "connection_init", "payload": plan.init_payload}).decode()
            )
            ack = orjson.loads(await asyncio.wait_for(ws.recv(), plan.connect_timeout_s))
            if ack.get("type") != "connection_ack":
                raise RuntimeError(f"expected connection_ack, got {ack}")
            payload = {"query": QUOTES, "variables": {"s": list(conn.symbols)}}
            await ws.send(
                orjson.dumps({"id": "1", "type": "subscribe", "payload": payload}).decode()
            )
        except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed, RuntimeError) as exc:
            stats.connect_failures += 1
            stats.error(f"connect: {type(exc).__name__}: {exc}")
            return
    stats.connected += 1
    try:
        await _receive(ws, stats, window, ready)
    finally:
        await ws.close()


async def _receive(
    ws: ClientConnection, stats: _Stats, window: _Window, ready: asyncio.Event
) -> None:
    first = True
    hist = stats.hist
    in_window = stats.deliveries_in_window
    distinct = stats.distinct
    loads = orjson.loads
    clock = time.time
    try:
        async for raw in ws:
            now_ms = clock() * 1000.0
            msg = loads(raw)
            kind = msg.get("type")
            if kind == "next":
                payload = msg["payload"]
                data = payload.get("data")
                if payload.get("errors") or not data:
                    stats.graphql_errors += 1
                    stats.error(f"next: {payload}")
                    continue
                quote = data["quotes"]
                if first:
                    first = False
                    stats.subscribed += 1
                stats.deliveries_total += 1
                if quote["snapshot"]:
                    stats.snapshots += 1
                    continue
                received_at: float = quote["receivedAt"]
                if window.start_ms <= received_at <= window.end_ms:
                    hist.record((now_ms - received_at) * 1000.0)
                    symbol: str = quote["symbol"]
                    in_window[symbol] += 1
                    distinct.add((symbol, received_at))
            elif kind == "ping":
                await ws.send('{"type":"pong"}')
            elif kind == "error":
                stats.graphql_errors += 1
                stats.error(f"error: {msg.get('payload')}")
                return
            elif kind == "complete":
                stats.error("server completed the subscription")
                return
    except ConnectionClosed as exc:
        if not ready.is_set() or exc.rcvd is not None:
            stats.closed_by_server += 1
            stats.error(f"closed: {exc}")


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
        start, end = shared_window[0], shared_window[1]
        if start > 0:
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
                        "failed": stats.connect_failures,
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
    tasks = [
        asyncio.create_task(
            _connection(plan, c, stats=stats, window=window, gate=gate, ready=ready)
        )
        for c in plan.connections
    ]
    watcher = asyncio.create_task(
        _watch(shared_window, window, stop=stop, queue=queue, plan=plan, stats=stats)
    )
    # Ready once every connection has subscribed (first quote seen) or failed.
    deadline = time.monotonic() + plan.connect_timeout_s + len(plan.connections) / 100.0
    while (  # noqa: ASYNC110 - counters updated by many tasks, polled here
        stats.subscribed + stats.connect_failures + stats.closed_by_server < len(plan.connections)
        and time.monotonic() < deadline
        and not stop.is_set()
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
        stats = asyncio.run(_run(plan, shared_window, stop, queue))
    except BaseException as exc:
        queue.put(("failed", plan.index, f"{type(exc).__name__}: {exc}"))
        raise
    queue.put(
        (
            "result",
            plan.index,
            {
                "hist": stats.hist,
                "deliveries_total": stats.deliveries_total,
                "deliveries_in_window": dict(stats.deliveries_in_window),
                "snapshots": stats.snapshots,
                "distinct": stats.distinct,
                "connected": stats.connected,
                "subscribed": stats.subscribed,
                "connect_failures": stats.connect_failures,
                "closed_by_server": stats.closed_by_server,
                "graphql_errors": stats.graphql_errors,
                "errors": stats.errors,
            },
        )
    )
