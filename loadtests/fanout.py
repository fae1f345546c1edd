"""Fan-out load test: many graphql-transport-ws subscribers of live quotes.

    python -m loadtests.fanout --clients 200 --duration 20
    python -m loadtests.fanout --url ws://127.0.0.1:8000/graphql --clients 50 --duration 10

Without ``--url`` it replays a real recording (AMZN, 2012-06-21; cloned under
``--symbols`` symbols: AMZN, AMZN1, ...) over the Polygon protocol in this process,
starts ``tickgraph serve`` as a subprocess fed by it, and measures. With ``--url`` it
only runs the subscribers, against any server speaking graphql-transport-ws with a
``quotes(symbols: [String!]!) { symbol receivedAt snapshot }`` subscription
(``--server-pid`` then names the process whose CPU and memory to sample).

Subscribers run in ``--procs`` processes (plain asyncio + websockets + orjson), each
subscribed once to ``--symbols-per-client`` symbols in rotation. Connections bind
source addresses spread over 127.0.0.0/8, ``--clients-per-ip`` per address, because
anonymous quotas (5 subscriptions, 10 symbols, 20 requests at once) are per IP.

Measurement covers a window of ``--duration`` seconds that opens ``--warmup`` seconds
after every subscriber has its first quote. Only quotes the server received inside the
window count (by ``receivedAt``), so the offered and delivered counts line up. Prints
one JSON object on stdout; a progress line on stderr every ``--progress`` seconds.

Latency is the client's receipt time minus ``receivedAt`` (both from this machine's
wall clock): what the server adds between reading an upstream frame and a subscriber
reading the quote, including the client's own queueing. "conflated_or_dropped" is the
quotes a subscriber should have had (offered for its symbols in the window) and did not
get: tickgraph conflates quotes for a slow reader (newest per symbol), so this is how
much conflation happened.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import queue as queue_mod
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtests.fanout_clients import ConnectionPlan, LatencyHistogram, ProcessPlan, run_process
from loadtests.fanout_server import (
    CloningSource,
    ProcSample,
    clone_symbols,
    describe_upstream,
    sample_process,
    start_tickgraph,
    start_upstream,
)

DEFAULT_RECORDING = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "polygon-replay-AMZN-2012-06-21.jsonl.gz"
)
MAX_CLIENTS = 20_000
MAX_DURATION_S = 600.0
MAX_PROCS = 64
#: How long after the window closes subscribers keep reading in-flight quotes.
GRACE_S = 1.0


@dataclass
class Samples:
    """/proc samples of the server (and the client processes) along the run."""

    idle: ProcSample | None = None  # feed flowing, before any subscriber
    connected: ProcSample | None = None  # every subscriber has its first quote
    start: ProcSample | None = None  # the window opens
    end: ProcSample | None = None  # the window closes
    clients_start: list[ProcSample | None] = field(default_factory=list)
    clients_end: list[ProcSample | None] = field(default_factory=list)


def _cpu_percent(first: ProcSample | None, last: ProcSample | None) -> float | None:
    if first is None or last is None or last.at <= first.at:
        return None
    return round(100.0 * (last.cpu_s - first.cpu_s) / (last.at - first.at), 1)


def _mb(sample: ProcSample | None) -> float | None:
    return round(sample.rss_bytes / 2**20, 1) if sample is not None else None


@dataclass
class Target:
    url: str
    server_pid: int | None
    source: CloningSource | None = None
    upstream_stats: dict[str, int] = field(default_factory=dict)


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {raw}")
    return value


def _seconds(raw: str) -> float:
    value = float(raw)
    if not 0.0 < value <= MAX_DURATION_S:
        raise argparse.ArgumentTypeError(f"must be in (0, {MAX_DURATION_S:g}], got {raw}")
    return value


def _speed(raw: str) -> float | None:
    if raw.strip().lower() == "max":
        return None
    value = float(raw)
    if not 0.0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"speed must be positive or 'max', got {raw}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m loadtests.fanout", description=__doc__.split("\n\n")[0] if __doc__ else ""
    )
    p.add_argument("--clients", type=_positive_int, default=100, help="connections (default 100)")
    p.add_argument("--duration", type=_seconds, default=10.0, help="window, s (default 10)")
    p.add_argument("--warmup", type=float, default=1.0, help="s after all subscribed (default 1)")
    p.add_argument(
        "--procs",
        type=_positive_int,
        default=max(1, min(4, (os.cpu_count() or 2) // 2)),
        help="client processes (default: half the CPUs, at most 4)",
    )
    p.add_argument("--symbols", type=_positive_int, default=4, help="symbols in the replay")
    p.add_argument("--symbols-per-client", type=_positive_int, default=2)
    p.add_argument(
        "--clients-per-ip",
        type=_positive_int,
        default=5,
        help="connections per source address (127.0.0.0/8 spread, default 5)",
    )
    p.add_argument("--no-spread", action="store_true", help="connect from 127.0.0.1 only")
    p.add_argument(
        "--speed", type=_speed, default=100.0, help="replay speed x real time or 'max' (100)"
    )
    p.add_argument("--recording", type=Path, default=DEFAULT_RECORDING)
    p.add_argument("--url", help="target a running server instead (ws://.../graphql)")
    p.add_argument("--server-pid", type=int, help="with --url: process to sample")
    p.add_argument("--symbol-list", help="with --url: comma-separated symbols to subscribe to")
    p.add_argument("--database-url", help="use this PostgreSQL instead of an embedded one")
    p.add_argument("--deflate", action="store_true", help="offer permessage-deflate")
    p.add_argument("--connect-concurrency", type=_positive_int, default=50, help="per process")
    p.add_argument("--progress", type=float, default=2.0, help="progress line every N s")
    p.add_argument("--out", type=Path, help="also write the JSON here")
    args = p.parse_args(argv)
    if args.clients > MAX_CLIENTS:
        p.error(f"--clients: at most {MAX_CLIENTS}")
    args.procs = min(args.procs, MAX_PROCS, args.clients)
    if args.url is None and not args.recording.is_file():
        p.error(f"--recording: no such file: {args.recording}")
    if args.url is not None and not args.url.startswith(("ws://127.", "ws://localhost")):
        p.error("--url: loopback only (ws://127.x.x.x or ws://localhost)")
    return args


def source_ip(connection: int, per_ip: int) -> str:
    """127.10.0.1, 127.10.0.2, ...: ``per_ip`` consecutive connections share one."""
    n = connection // per_ip
    return f"127.{10 + n // 62_500}.{(n // 250) % 250}.{n % 250 + 1}"


def plan_processes(
    args: argparse.Namespace, url: str, symbols: tuple[str, ...]
) -> list[ProcessPlan]:
    per_client = min(args.symbols_per_client, len(symbols))
    connections = [
        ConnectionPlan(
            symbols=tuple(symbols[(i + j) % len(symbols)] for j in range(per_client)),
            local_ip=None if args.no_spread else source_ip(i, args.clients_per_ip),
        )
        for i in range(args.clients)
    ]
    return [
        ProcessPlan(
            index=k,
            url=url,
            connections=tuple(connections[k :: args.procs]),
            connect_concurrency=args.connect_concurrency,
            deflate=args.deflate,
        )
        for k in range(args.procs)
    ]


def _log(text: str) -> None:
    print(f"fanout: {text}", file=sys.stderr, flush=True)


class Run:
    """The client processes and what they report."""

    def __init__(self, plans: list[ProcessPlan]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.plans = plans
        self.window = ctx.Array("d", [0.0, 0.0])
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

    def start(self) -> None:
        for proc in self.procs:
            proc.start()

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

    def close(self) -> None:
        self.stop.set()
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)


async def _wait_ready(run: Run, args: argparse.Namespace, target: Target) -> None:
    limit = time.monotonic() + 60.0 + args.clients / 50.0
    last = 0.0
    while len(run.ready) + len(run.failures) < len(run.procs):
        if time.monotonic() > limit:
            raise TimeoutError("client processes did not get ready in time")
        await asyncio.to_thread(run.pump, 0.2)
        if time.monotonic() - last >= args.progress:
            last = time.monotonic()
            _log(
                f"connecting: {run.total('subscribed')}/{args.clients} subscribed, "
                f"{run.total('failed')} failed"
            )
    if run.failures:
        raise RuntimeError(f"client processes failed: {run.failures}")


async def _measure(
    run: Run, args: argparse.Namespace, target: Target, samples: Samples
) -> tuple[float, float]:
    start = time.time() + args.warmup
    end = start + args.duration
    if target.source is not None:
        target.source.window = (start, end)
    run.window[0], run.window[1] = start, end
    await asyncio.sleep(max(0.0, start - time.time()))
    pid = target.server_pid
    samples.start = cpu_start = sample_process(pid) if pid else None
    samples.clients_start = [sample_process(p.pid) for p in run.procs if p.pid]
    last_at, last_deliveries = time.monotonic(), run.total("deliveries")
    last_cpu = cpu_start
    while time.time() < end:
        await asyncio.to_thread(run.pump, min(args.progress, max(0.0, end - time.time())))
        now, deliveries = time.monotonic(), run.total("deliveries")
        rate = (deliveries - last_deliveries) / max(now - last_at, 1e-9)
        cpu = sample_process(pid) if pid else None
        line = f"t={args.duration - (end - time.time()):5.1f}s deliveries/s={rate:,.0f}"
        if target.source is not None:
            line += f" upstream events={target.source.events_offered_total:,}"
        if cpu is not None and last_cpu is not None:
            busy = (cpu.cpu_s - last_cpu.cpu_s) / max(cpu.at - last_cpu.at, 1e-9)
            line += f" server cpu={busy * 100:.0f}% rss={cpu.rss_bytes / 2**20:.0f}MiB"
        _log(line)
        last_at, last_deliveries, last_cpu = now, deliveries, cpu
    samples.end = sample_process(pid) if pid else None
    samples.clients_end = [sample_process(p.pid) for p in run.procs if p.pid]
    return start, end


def _report(
    args: argparse.Namespace,
    target: Target,
    run: Run,
    *,
    symbols: tuple[str, ...],
    window: tuple[float, float],
    samples: Samples,
) -> dict[str, Any]:
    duration = window[1] - window[0]
    hist = LatencyHistogram()
    delivered: Counter[str] = Counter()
    distinct: set[tuple[str, float]] = set()
    errors: list[str] = []
    totals: Counter[str] = Counter()
    for body in run.results.values():
        hist.merge(body["hist"])
        delivered.update(body["deliveries_in_window"])
        distinct |= body["distinct"]
        errors.extend(body["errors"])
        for key in (
            "deliveries_total",
            "snapshots",
            "connected",
            "subscribed",
            "connect_failures",
            "closed_by_server",
            "graphql_errors",
        ):
            totals[key] += body[key]
    subscribers: Counter[str] = Counter()
    for plan in run.plans:
        for conn in plan.connections:
            subscribers.update(conn.symbols)
    deliveries = sum(delivered.values())
    offered = dict(target.source.quotes_offered) if target.source is not None else None
    expected = (
        sum(n * subscribers[sym] for sym, n in offered.items()) if offered is not None else None
    )
    server: dict[str, Any] | None = None
    if samples.end is not None:
        connections = max(totals["connected"], 1)
        idle, connected, end = samples.idle, samples.connected, samples.end
        per_connection = (
            round((connected.rss_bytes - idle.rss_bytes) / connections / 1024, 1)
            if idle is not None and connected is not None
            else None
        )
        server = {
            "pid": target.server_pid,
            "cpu_percent": _cpu_percent(samples.start, end),
            "rss_idle_mb": _mb(idle),
            "rss_all_connected_mb": _mb(connected),
            "rss_end_mb": _mb(end),
            "rss_peak_mb": round(end.hwm_bytes / 2**20, 1),
            "rss_growth_in_window_mb": (
                round((end.rss_bytes - samples.start.rss_bytes) / 2**20, 1)
                if samples.start is not None
                else None
            ),
            "threads": end.threads,
            "memory_per_connection_kb": per_connection,
        }
    client_cpu = [
        _cpu_percent(a, b) for a, b in zip(samples.clients_start, samples.clients_end, strict=False)
    ]
    return {
        "config": {
            "target": "tickgraph (started)" if target.source is not None else args.url,
            "url": target.url,
            "clients": args.clients,
            "client_procs": args.procs,
            "symbols": list(symbols),
            "symbols_per_client": min(args.symbols_per_client, len(symbols)),
            "replay_speed": args.speed if target.source is not None else None,
            "recording": str(args.recording) if target.source is not None else None,
            "duration_s": round(duration, 3),
            "deflate": args.deflate,
            "cpu_count": os.cpu_count(),
        },
        "connections": {
            "connected": totals["connected"],
            "subscribed": totals["subscribed"],
            "connect_failures": totals["connect_failures"],
            "closed_by_server": totals["closed_by_server"],
            "graphql_errors": totals["graphql_errors"],
        },
        "events_offered_per_s": (
            round(sum(offered.values()) / duration, 1) if offered is not None else None
        ),
        "events_delivered_per_s": round(len(distinct) / duration, 1),
        "deliveries_per_s": round(deliveries / duration, 1),
        "deliveries": deliveries,
        "expected_deliveries": expected,
        "conflated_or_dropped": expected - deliveries if expected is not None else None,
        "delivered_fraction": round(deliveries / expected, 4) if expected else None,
        "snapshots": totals["snapshots"],
        "latency_ms": hist.summary(),
        "server": server,
        "client_procs_cpu_percent": client_cpu,
        "upstream": target.upstream_stats or None,
        "errors": errors[:10],
    }


async def _drive(
    args: argparse.Namespace, target: Target, symbols: tuple[str, ...]
) -> dict[str, Any]:
    pid = target.server_pid
    samples = Samples(idle=sample_process(pid) if pid else None)
    run = Run(plan_processes(args, target.url, symbols))
    run.start()
    try:
        _log(f"{args.clients} clients in {args.procs} processes -> {target.url}")
        await _wait_ready(run, args, target)
        samples.connected = sample_process(pid) if pid else None
        _log(f"{sum(run.ready.values())} subscribed; measuring for {args.duration:g}s")
        start, end = await _measure(run, args, target, samples)
        await asyncio.sleep(GRACE_S)
        run.stop.set()
        limit = time.monotonic() + 30.0
        while not run.done() and time.monotonic() < limit:
            await asyncio.to_thread(run.pump, 0.5)
        if not run.done():
            raise RuntimeError("client processes did not report results in time")
        if run.failures:
            raise RuntimeError(f"client processes failed: {run.failures}")
        return _report(
            args,
            target,
            run,
            symbols=symbols,
            window=(start, end),
            samples=samples,
        )
    finally:
        await asyncio.to_thread(run.close)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    if args.url is not None:
        symbols = tuple(s.strip() for s in (args.symbol_list or "AMZN").split(",") if s.strip())
        return await _drive(args, Target(args.url, args.server_pid), symbols)
    symbols = clone_symbols("AMZN", args.symbols)
    source = CloningSource(args.recording, symbols, speed=args.speed, loop=True)
    upstream = await start_upstream(source)
    try:
        with tempfile.TemporaryDirectory(prefix="fanout-") as data_dir:
            _log(f"replaying {args.recording.name} as {','.join(symbols)} at {upstream.url}")
            async with start_tickgraph(
                upstream.url, symbols, Path(data_dir), database_url=args.database_url
            ) as server:
                _log(f"tickgraph pid {server.pid} at {server.ws_url}")
                target = Target(server.ws_url, server.pid, source)
                report = await _drive(args, target, symbols)
                report["upstream"] = describe_upstream(upstream)
                return report
    finally:
        await upstream.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = asyncio.run(main_async(args))
    except (RuntimeError, TimeoutError) as exc:
        _log(f"failed: {exc}")
        return 1
    text = json.dumps(report, indent=2)
    print(text, flush=True)
    if args.out is not None:
        args.out.write_text(text + "\n")
    if report["connections"]["subscribed"] == 0:
        _log("failed: no subscriber got a quote")
        return 1
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
