"""Measuring one phase against one running server: start the client processes, wait
until they are subscribed, measure each step's window, collect and report.

The parent publishes each window (``[start, end, index]``, epoch seconds) in a shared
array; the clients count into that window's figures. Between windows it waits
``GRACE_S`` (quotes received at the end of a window are still on their way) and the
next step's warmup (a new rate settles). Server CPU and memory come from /proc at each
window's edges; a baseline's own counters (``/stats``) likewise.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue as queue_mod
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from loadtests.fanout_clients import LatencyHistogram, ProcessPlan, run_process
from loadtests.fanout_scenarios import Phase, Step
from loadtests.fanout_server import (
    OfferedSource,
    ProcSample,
    sample_process,
    send_queue,
    upstream_backlog,
)
from streams.polygon_server import PolygonProtocolServer

#: How long after a window closes subscribers keep reading in-flight quotes.
GRACE_S = 1.0
#: The offered rate (quotes/s, in total) while subscribers connect and between steps:
#: little enough for any target to keep up with 1,000 subscribers (strawberry's
#: capacity is a few thousand deliveries/s), so connecting never waits for a backlog.
IDLE_RATE = 2.0
#: Before a phase: this many quotes of every symbol, quickly, before any subscriber
#: connects, so every symbol has a current quote and each subscriber gets its first
#: message (the snapshot) as it subscribes.
PRIME_QUOTES = 5
PRIME_S = 0.5
#: Settled: what the replay sent and the server has not read yet is below this...
SETTLED_BYTES = 8 * 1024
#: ... or this long has passed (a server that cannot catch up does not stop the run).
SETTLE_MAX_S = 2.0
#: Counters a baseline's /stats reports that are worth a per-window difference.
_COUNTERS = ("sent", "published", "dropped", "congestion_events")


_STARTED = time.monotonic()


def log(text: str) -> None:
    print(f"fanout {time.monotonic() - _STARTED:6.1f}s: {text}", file=sys.stderr, flush=True)


def cpu_percent(first: ProcSample | None, last: ProcSample | None) -> float | None:
    if first is None or last is None or last.at <= first.at:
        return None
    return round(100.0 * (last.cpu_s - first.cpu_s) / (last.at - first.at), 1)


def mb(sample: ProcSample | None) -> float | None:
    return round(sample.rss_bytes / 2**20, 1) if sample is not None else None


class Run:
    """Client processes and what they report."""

    def __init__(self, plans: list[ProcessPlan]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.plans = plans
        self.window = ctx.Array("d", [0.0, 0.0, -1.0])
        self.stop = ctx.Event()
        self.queue: Any = ctx.Queue()
        self.procs = [
            ctx.Process(
                target=run_process,
                args=(plan, self.window, self.stop, self.queue),
                name=f"fanout-clients-{plan.index}",
                daemon=True,
            )
            for plan in plans
        ]
        self.progress: dict[int, dict[str, int]] = {}
        self.ready: dict[int, int] = {}  # process -> subscribed when it got ready
        self.results: dict[int, dict[str, Any]] = {}
        self.failures: dict[int, str] = {}

    @property
    def connections(self) -> int:
        return sum(len(plan.connections) for plan in self.plans)

    def start(self) -> None:
        for proc in self.procs:
            proc.start()

    def publish(self, index: int, start: float, end: float) -> None:
        with self.window.get_lock():
            self.window[0], self.window[1], self.window[2] = start, end, float(index)

    def pump(self, timeout_s: float) -> None:
        """Take what the processes reported, waiting at most ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            try:
                kind, index, body = self.queue.get(timeout=max(0.0, remaining))
            except queue_mod.Empty:
                return
            if kind == "progress":
                self.progress[index] = body
            elif kind == "ready":
                self.ready[index] = body["subscribed"]
            elif kind == "result":
                self.results[index] = body
            elif kind == "failed":
                self.failures[index] = body
            if remaining <= 0:
                return

    def total(self, key: str) -> int:
        return sum(p.get(key, 0) for p in self.progress.values())

    def done(self) -> bool:
        return len(self.results) + len(self.failures) == len(self.procs)

    def client_samples(self) -> list[ProcSample | None]:
        return [sample_process(p.pid) for p in self.procs if p.pid]

    async def wait_ready(self, progress_s: float) -> int:
        """Until every process has its subscribers settled; returns how many subscribed."""
        limit = time.monotonic() + 60.0 + self.connections / 50.0
        last = time.monotonic()
        while len(self.ready) + len(self.failures) < len(self.procs):
            if time.monotonic() > limit:
                raise TimeoutError("client processes did not get ready in time")
            await asyncio.to_thread(self.pump, 0.2)
            if time.monotonic() - last >= progress_s:
                last = time.monotonic()
                log(
                    f"connecting: {self.total('subscribed')}/{self.connections} subscribed, "
                    f"{self.total('failed')} failed"
                )
        if self.failures:
            raise RuntimeError(f"client processes failed: {self.failures}")
        return sum(self.ready.values())

    async def finish(self) -> None:
        """Tell the processes to stop and collect their results."""
        self.stop.set()
        limit = time.monotonic() + 30.0
        while not self.done() and time.monotonic() < limit:
            await asyncio.to_thread(self.pump, 0.5)
        if not self.done():
            raise RuntimeError("client processes did not report results in time")
        if self.failures:
            raise RuntimeError(f"client processes failed: {self.failures}")

    def close(self) -> None:
        self.stop.set()
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)


@dataclass
class Server:
    """What the parent can observe of the server under test (all optional)."""

    pid: int | None = None
    source: OfferedSource | None = None
    #: A baseline's counters, or None.
    stats: Callable[[], Awaitable[dict[str, Any] | None]] | None = None
    #: The replay feeding it: how much it holds that the server has not read yet.
    upstream: PolygonProtocolServer | None = None
    #: Its port, for what the kernel holds on its sockets.
    port: int | None = None

    def send_queue_mb(self) -> float | None:
        held = send_queue(self.port) if self.port is not None else None
        return round(held / 2**20, 1) if held is not None else None

    def upstream_backlog(self) -> int | None:
        return upstream_backlog(self.upstream) if self.upstream is not None else None

    def sample(self) -> ProcSample | None:
        return sample_process(self.pid) if self.pid else None

    async def counters(self) -> dict[str, Any] | None:
        return await self.stats() if self.stats is not None else None


@dataclass
class WindowRecord:
    """What the parent saw of one window (the clients' figures come at the end)."""

    index: int
    step: Step
    start: float = 0.0
    end: float = 0.0
    offered: dict[str, int] | None = None
    server_start: ProcSample | None = None
    server_end: ProcSample | None = None
    clients_start: list[ProcSample | None] = field(default_factory=list)
    clients_end: list[ProcSample | None] = field(default_factory=list)
    counters_start: dict[str, Any] | None = None
    counters_end: dict[str, Any] | None = None
    lag_resets: int | None = None
    upstream_backlog_start: int | None = None
    upstream_backlog_end: int | None = None


async def prime(source: OfferedSource, symbols: Sequence[str]) -> None:
    """Switch the replay to ``symbols``; when it is paced, send ``PRIME_QUOTES`` of each
    within ``PRIME_S``, then offer ``IDLE_RATE``."""
    source.configure(symbols=symbols)
    if not source.paced:
        return
    source.configure(rate=PRIME_QUOTES * len(symbols) / PRIME_S)
    await asyncio.sleep(PRIME_S)
    source.configure(rate=IDLE_RATE)


async def settle(server: Server) -> float | None:
    """Offer ``IDLE_RATE`` and wait until the server has read its upstream backlog (at
    most ``SETTLE_MAX_S``): every step starts from an empty feed, not from the backlog
    an overloaded previous step or the connections left. Returns the seconds it took
    (``None`` when there is no replay to watch)."""
    source = server.source
    if source is None or server.upstream is None:
        return None
    if source.paced:
        source.configure(rate=IDLE_RATE)
    started = time.monotonic()
    while time.monotonic() - started < SETTLE_MAX_S:
        backlog = server.upstream_backlog()
        if backlog is None or backlog < SETTLED_BYTES:
            break
        await asyncio.sleep(0.1)
    return round(time.monotonic() - started, 2)


async def measure_window(
    run: Run, server: Server, index: int, step: Step, *, progress_s: float
) -> WindowRecord:
    """Set the step's rate, let it settle, publish the window and watch it pass."""
    source = server.source
    if step.rate is not None and source is not None:
        source.configure(rate=step.rate)
    record = WindowRecord(index, step)
    record.start = start = time.time() + step.warmup_s
    record.end = end = start + step.duration_s
    if source is not None:
        source.open_window(start, end)
    run.publish(index, start, end)
    resets_before = source.lag_resets if source is not None else 0
    await asyncio.sleep(max(0.0, start - time.time()))
    record.server_start = last_cpu = server.sample()
    record.clients_start = run.client_samples()
    record.upstream_backlog_start = server.upstream_backlog()
    # A saturated baseline answers /stats late (same loop): never wait for it here.
    counters_start = asyncio.ensure_future(server.counters())
    last_at, last_deliveries = time.monotonic(), run.total("deliveries")
    log(f"{step.label}: measuring {step.duration_s:g}s")
    while time.time() < end:
        await asyncio.to_thread(run.pump, min(progress_s, max(0.0, end - time.time())))
        now, deliveries = time.monotonic(), run.total("deliveries")
        rate = (deliveries - last_deliveries) / max(now - last_at, 1e-9)
        cpu = server.sample()
        line = f"t={step.duration_s - (end - time.time()):5.1f}s deliveries/s={rate:,.0f}"
        if source is not None:
            line += f" upstream events={source.events_offered_total:,}"
        if cpu is not None and last_cpu is not None:
            busy = (cpu.cpu_s - last_cpu.cpu_s) / max(cpu.at - last_cpu.at, 1e-9)
            line += f" server cpu={busy * 100:.0f}% rss={cpu.rss_bytes / 2**20:.0f}MiB"
        log(line)
        last_at, last_deliveries, last_cpu = now, deliveries, cpu
    record.server_end = server.sample()
    record.upstream_backlog_end = server.upstream_backlog()
    record.clients_end = run.client_samples()
    counters_end = asyncio.ensure_future(server.counters())
    if source is not None:
        record.offered = dict(source.quotes_offered)
        record.lag_resets = source.lag_resets - resets_before
    await asyncio.sleep(GRACE_S)
    record.counters_start = await counters_start
    record.counters_end = await counters_end
    return record


# --- reports -----------------------------------------------------------------------------


def _kb(n: int | None) -> float | None:
    return round(n / 1024, 1) if n is not None else None


def _counter_deltas(
    first: dict[str, Any] | None, last: dict[str, Any] | None
) -> dict[str, int] | None:
    if first is None or last is None:
        return None
    return {k: int(last[k]) - int(first[k]) for k in _COUNTERS if k in first and k in last}


def window_report(
    record: WindowRecord,
    results: Sequence[dict[str, Any]],
    subscribers: Counter[str],
    *,
    batches: bool = False,
) -> dict[str, Any]:
    """One window's figures, all client processes merged."""
    duration = record.end - record.start
    hist = LatencyHistogram()
    feed_hist = LatencyHistogram()
    in_window: Counter[str] = Counter()
    distinct: set[tuple[str, float]] = set()
    arrivals = messages = dropped_before = 0
    for body in results:
        w = body["windows"].get(record.index)
        if w is None:
            continue
        hist.merge(w["hist"])
        feed_hist.merge(w["feed_hist"])
        in_window.update(w["deliveries_in_window"])
        distinct |= w["distinct"]
        arrivals += w["arrivals"]
        messages += w["messages"]
        dropped_before += w["dropped_before"]
    offered = record.offered
    expected = (
        sum(n * subscribers[sym] for sym, n in offered.items()) if offered is not None else None
    )
    delivered = sum(in_window.values())
    server: dict[str, Any] | None = None
    if record.server_end is not None:
        start, end = record.server_start, record.server_end
        server = {
            "cpu_percent": cpu_percent(start, end),
            "rss_start_mb": mb(start),
            "rss_end_mb": mb(end),
            "rss_growth_in_window_mb": (
                round((end.rss_bytes - start.rss_bytes) / 2**20, 1) if start else None
            ),
            "rss_peak_mb": round(end.hwm_bytes / 2**20, 1),
            "threads": end.threads,
        }
        counters = _counter_deltas(record.counters_start, record.counters_end)
        if counters is not None:
            server["counters_in_window"] = counters
    offered_total = sum(offered.values()) if offered is not None else None
    report: dict[str, Any] = {
        "step": record.step.label,
        "rate_setting": record.step.rate,
        "duration_s": round(duration, 3),
        "events_offered_per_s": (
            round(offered_total / duration, 1) if offered_total is not None else None
        ),
        # Distinct (symbol, receivedAt): quotes of one symbol in one upstream frame share
        # a receivedAt, so at several quotes per symbol per frame this counts frames.
        "events_delivered_per_s": round(len(distinct) / duration, 1),
        "upstream_backlog_kb": _kb(record.upstream_backlog_end),
        "upstream_backlog_growth_kb": _kb(
            record.upstream_backlog_end - record.upstream_backlog_start
            if record.upstream_backlog_end is not None and record.upstream_backlog_start is not None
            else None
        ),
        "deliveries_per_s": round(arrivals / duration, 1),
        "deliveries": arrivals,
        "messages_per_s": round(messages / duration, 1),
        "delivered_in_window": delivered,
        "expected_deliveries": expected,
        "conflated_or_dropped": expected - delivered if expected is not None else None,
        "delivered_fraction": round(delivered / expected, 4) if expected else None,
        "latency_ms": hist.summary(),
        "feed_latency_ms": feed_hist.summary() if feed_hist.count else None,
        "server": server,
        "client_procs_cpu_percent": [
            cpu_percent(a, b)
            for a, b in zip(record.clients_start, record.clients_end, strict=False)
        ],
    }
    if batches:
        report["dropped_before"] = dropped_before
    if record.lag_resets:
        report["upstream_lag_resets"] = record.lag_resets
    return report


def connections_report(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    totals: Counter[str] = Counter()
    errors: list[str] = []
    for body in results:
        errors.extend(body["errors"])
        for key in (
            "connected",
            "subscribed",
            "rejected",
            "connect_failures",
            "closed_by_server",
            "graphql_errors",
            "snapshots",
            "deliveries_total",
        ):
            totals[key] += body[key]
    return {**totals, "errors": errors[:10]}


# --- one phase ---------------------------------------------------------------------------


@dataclass
class PhasePlans:
    fast: list[ProcessPlan]
    slow: list[ProcessPlan] = field(default_factory=list)


async def _slow_clients(
    phase: Phase, plans: PhasePlans, server: Server, *, progress_s: float
) -> tuple[Run, dict[str, Any]]:
    """Connect the subscribers that never read, then fill their buffers: offer
    ``phase.fill_rate`` for ``phase.fill_s`` (before any fast subscriber connects), so
    that the server has a full socket and whatever it queues for each of them from the
    first measured window on."""
    run = Run(plans.slow)
    run.start()
    before = server.sample()
    log(f"{phase.name}: {run.connections} slow subscribers")
    subscribed = await run.wait_ready(progress_s)
    connected = server.sample()
    source = server.source
    if phase.fill_rate is not None and source is not None and source.paced:
        source.configure(rate=phase.fill_rate)
        log(f"{phase.name}: filling their buffers at {phase.fill_rate:g}/s for {phase.fill_s:g}s")
        await asyncio.sleep(phase.fill_s)
    filled = server.sample()
    return run, {
        "subscribed": subscribed,
        "rss_before_mb": mb(before),
        "rss_after_connect_mb": mb(connected),
        "rss_after_fill_mb": mb(filled),
        "kernel_send_queue_after_fill_mb": server.send_queue_mb(),
        "fill_rate": phase.fill_rate,
        "fill_s": phase.fill_s,
    }


async def run_phase(
    phase: Phase, plans: PhasePlans, server: Server, *, progress_s: float
) -> dict[str, Any]:
    """Connect the phase's subscribers, measure its steps, report.

    With slow subscribers, they connect (and their buffers fill) first, stay for the
    first step and leave before the second: the fast subscribers are measured with them,
    then without them."""
    run = Run(plans.fast)
    slow_run: Run | None = None
    records: list[WindowRecord] = []
    extra: dict[str, Any] = {}
    idle = connected = None
    try:
        if plans.slow:
            slow_run, extra["slow_clients"] = await _slow_clients(
                phase, plans, server, progress_s=progress_s
            )
            await settle(server)
        idle = server.sample()
        run.start()
        log(f"{phase.name}: {run.connections} subscribers in {len(run.procs)} processes")
        started = time.monotonic()
        subscribed = await run.wait_ready(progress_s)
        extra["connect_s"] = round(time.monotonic() - started, 1)
        connected = server.sample()
        if subscribed == 0:
            await run.finish()
            return {
                "error": "no subscriber got a first message",
                "connections": connections_report(list(run.results.values())),
            }
        log(f"{phase.name}: {subscribed} subscribed")
        settled: list[float | None] = []
        for index, step in enumerate(phase.steps):
            if index == 1 and slow_run is not None:
                extra["slow_clients"]["kernel_send_queue_before_they_left_mb"] = (
                    server.send_queue_mb()
                )
                await slow_run.finish()
                extra["slow_clients"]["connections"] = connections_report(
                    list(slow_run.results.values())
                )
                await asyncio.to_thread(slow_run.close)
                slow_run = None
                extra["slow_clients"]["rss_after_they_left_mb"] = mb(server.sample())
            settled.append(await settle(server))
            records.append(await measure_window(run, server, index, step, progress_s=progress_s))
        extra["settle_s"] = settled
        await run.finish()
    finally:
        await asyncio.to_thread(run.close)
        if slow_run is not None:
            await asyncio.to_thread(slow_run.close)
    results = list(run.results.values())
    subscribers = Counter[str]()
    for plan in plans.fast:
        for conn in plan.connections:
            subscribers.update(conn.symbols)
    batches = phase.batch_window_ms is not None
    memory = None
    if idle is not None and connected is not None:
        memory = round((connected.rss_bytes - idle.rss_bytes) / max(run.connections, 1) / 1024, 1)
    return {
        "connections": connections_report(results),
        "server_rss_idle_mb": mb(idle),
        "server_rss_all_connected_mb": mb(connected),
        "memory_per_connection_kb": memory,
        **extra,
        "windows": [window_report(r, results, subscribers, batches=batches) for r in records],
    }
