"""Fan-out load test: many graphql-transport-ws subscribers of live quotes, against
tickgraph and two baselines on the same machine, data and client plans.

    python -m loadtests.fanout --clients 200 --duration 10
    python -m loadtests.fanout --clients 1000 --symbols 1 --rate 100 --targets tickgraph,raw
    python -m loadtests.fanout --suite                 # the issue's scenarios, < 5 min
    python -m loadtests.fanout --suite --scale 0.1     # the same, smaller and quicker
    python -m loadtests.fanout --suite --phases sparse,distinct_lists   # some of them
    python -m loadtests.fanout --url ws://127.0.0.1:8000/graphql --clients 50 --duration 10

Without ``--url``, for each of ``--targets`` in turn (default ``tickgraph,raw,strawberry``)
it replays a real recording (AMZN, 2012-06-21; cloned under ``--symbols`` symbols: AMZN,
AMZN1, ...) over the Polygon protocol in this process, starts the target as a subprocess
fed by it, connects the same subscribers and measures; then it reports each target and
tickgraph's ratios to the others. The targets:

- ``tickgraph``: ``tickgraph serve``, anonymous access on;
- ``raw``: no GraphQL, one orjson frame per quote, ``websockets.broadcast`` (the ceiling
  of this stack; ``loadtests.fanout_baseline_raw``);
- ``strawberry``: a plain strawberry schema, one async generator per subscriber (the
  naive GraphQL path; ``loadtests.fanout_baseline_strawberry``).

The load: ``--rate N`` offers exactly N quotes/s in total over all symbols, evenly paced,
looping the recording's quotes with increasing sequence numbers
(``loadtests.fanout_pacing``); without it the recording plays at ``--speed`` x real time,
trades and bursts included. Every target gets a fresh replay from the same start.

With ``--url`` it only runs the subscribers, against any server speaking
graphql-transport-ws with a ``quotes(symbols: [String!]!) { symbol receivedAt snapshot }``
subscription (``--server-pid`` then names the process whose CPU and memory to sample).

Every target runs on ``--server-loop`` (uvloop by default, as tickgraph's own default).
Subscribers run in ``--procs`` processes (uvloop + a minimal WebSocket client + orjson:
``loadtests.fanout_wire``), each subscribed once to ``--symbols-per-client`` symbols in
rotation.
Connections bind source addresses spread over 127.0.0.0/8, ``--clients-per-ip`` per
address (fewer if needed to keep each address within 10 distinct symbols), because
tickgraph's anonymous quotas (5 subscriptions, 10 symbols) are per IP.

Measurement covers a window of ``--duration`` seconds that opens ``--warmup`` seconds
after every subscriber has its first message. ``deliveries_per_s`` counts quotes that
arrived during the window (the throughput); latency is their arrival time minus
``receivedAt`` (both from this machine's clock): from the server reading the upstream
frame to a subscriber reading the quote, queueing included. Quotes the server received
inside the window (by ``receivedAt``) are compared with what the replay offered for each
subscriber's symbols: ``conflated_or_dropped`` is what never arrived (tickgraph conflates
for slow readers, the baselines drop when their buffers are full).

Prints one JSON object on stdout, a progress line on stderr every ``--progress``
seconds, and with ``--suite`` a compact table on stderr at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import math
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtests.fanout_clients import ProcessPlan
from loadtests.fanout_measure import PhasePlans, Server, log, prime, run_phase
from loadtests.fanout_pacing import PacedQuoteSource
from loadtests.fanout_scenarios import (
    BASE_SYMBOL,
    ClientLayout,
    Phase,
    Step,
    clients_per_ip,
    plan_connections,
    source_ip,
    split_processes,
    suite,
)
from loadtests.fanout_server import (
    TARGETS,
    CloningSource,
    OfferedSource,
    clone_symbols,
    describe_upstream,
    start_target,
    start_upstream,
    target_stats,
)
from loadtests.fanout_summary import headline, ratios, scenario_summary, table

DEFAULT_RECORDING = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "polygon-replay-AMZN-2012-06-21.jsonl.gz"
)
MAX_CLIENTS = 20_000
MAX_DURATION_S = 600.0
MAX_PROCS = 64
MAX_RATE = 100_000.0

__all__ = ["DEFAULT_RECORDING", "main", "parse_args", "source_ip"]


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


def _rate(raw: str) -> float:
    value = float(raw)
    if not 0.0 < value <= MAX_RATE:
        raise argparse.ArgumentTypeError(f"rate must be in (0, {MAX_RATE:g}], got {raw}")
    return value


def _scale(raw: str) -> float:
    value = float(raw)
    if not 0.0 < value <= 10.0:
        raise argparse.ArgumentTypeError(f"scale must be in (0, 10], got {raw}")
    return value


def _targets(raw: str) -> tuple[str, ...]:
    kinds = tuple(dict.fromkeys(k.strip() for k in raw.split(",") if k.strip()))
    unknown = [k for k in kinds if k not in TARGETS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(f"targets among {','.join(TARGETS)}, got {raw!r}")
    return kinds


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m loadtests.fanout", description=__doc__.split("\n\n")[0] if __doc__ else ""
    )
    p.add_argument(
        "--targets",
        type=_targets,
        default=TARGETS,
        help=f"comma-separated, run in this order (default {','.join(TARGETS)})",
    )
    p.add_argument("--suite", action="store_true", help="run the issue's scenarios")
    p.add_argument("--scale", type=_scale, default=1.0, help="--suite: x subscriber counts")
    p.add_argument(
        "--phases",
        type=lambda raw: tuple(x.strip() for x in raw.split(",") if x.strip()),
        help="--suite: only these scenarios (comma-separated names)",
    )
    p.add_argument("--clients", type=_positive_int, default=100, help="connections (default 100)")
    p.add_argument("--duration", type=_seconds, default=None, help="window, s (10; suite 4)")
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
    p.add_argument(
        "--rate",
        type=_rate,
        help="offer exactly this many quotes/s in total over all symbols (instead of --speed)",
    )
    p.add_argument(
        "--batch-window-ms",
        type=_positive_int,
        help="subscribe to quoteBatches(windowMs: N) instead of quotes",
    )
    p.add_argument("--recording", type=Path, default=DEFAULT_RECORDING)
    p.add_argument("--url", help="target a running server instead (ws://.../graphql)")
    p.add_argument("--server-pid", type=int, help="with --url: process to sample")
    p.add_argument("--symbol-list", help="with --url: comma-separated symbols to subscribe to")
    p.add_argument("--database-url", help="tickgraph: this PostgreSQL, not an embedded one")
    p.add_argument(
        "--server-loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="event loop of every target (default uvloop, tickgraph's own default)",
    )
    p.add_argument("--deflate", action="store_true", help="offer permessage-deflate")
    p.add_argument("--connect-concurrency", type=_positive_int, default=50, help="per process")
    p.add_argument("--progress", type=float, default=2.0, help="progress line every N s")
    p.add_argument("--out", type=Path, help="also write the JSON here")
    args = p.parse_args(argv)
    if args.clients > MAX_CLIENTS:
        p.error(f"--clients: at most {MAX_CLIENTS}")
    if args.duration is None:
        args.duration = 4.0 if args.suite else 10.0
    args.procs = min(args.procs, MAX_PROCS)
    if args.url is None and not args.recording.is_file():
        p.error(f"--recording: no such file: {args.recording}")
    if args.url is not None and not args.url.startswith(("ws://127.", "ws://localhost")):
        p.error("--url: loopback only (ws://127.x.x.x or ws://localhost)")
    if args.url is not None and args.suite:
        p.error("--suite starts its own servers: not with --url")
    return args


def single_phase(args: argparse.Namespace, symbols: tuple[str, ...]) -> Phase:
    """The phase the command line describes (everything but ``--suite``)."""
    return Phase(
        "run",
        symbols,
        args.clients,
        min(args.symbols_per_client, len(symbols)),
        (Step("steady", args.duration, rate=args.rate, warmup_s=args.warmup),),
        batch_window_ms=args.batch_window_ms,
    )


def _plans(
    phase: Phase, args: argparse.Namespace, url: str, ip_base: int, *, feed_clock: bool
) -> tuple[PhasePlans, int]:
    per_ip = clients_per_ip(args.clients_per_ip, phase.symbols_per_client, len(phase.symbols))
    if phase.distinct:
        per_ip = 1  # lists of their own: one address each keeps within the symbol quota
    layout = ClientLayout(per_ip, spread=not args.no_spread, ip_base=ip_base)

    def split(slow: bool) -> list[ProcessPlan]:
        connections = plan_connections(phase, layout, slow=slow, feed_clock=feed_clock)
        if not connections:
            return []
        return split_processes(
            connections,
            args.procs,
            url,
            connect_concurrency=args.connect_concurrency,
            deflate=args.deflate,
        )

    plans = PhasePlans(fast=split(False), slow=split(True))
    return plans, ip_base + layout.addresses(phase.clients + phase.slow_clients)


def _make_source(args: argparse.Namespace, phases: Sequence[Phase]) -> OfferedSource:
    first = phases[0]
    rate = first.steps[0].rate
    if rate is not None:
        return PacedQuoteSource(args.recording, first.symbols, rate=rate)
    return CloningSource(args.recording, first.symbols, speed=args.speed, loop=True)


def _phase_config(phase: Phase, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "description": phase.description or None,
        "clients": phase.clients,
        "slow_clients": phase.slow_clients,
        "symbols": len(phase.symbols),
        "symbols_per_client": phase.symbols_per_client,
        "batch_window_ms": phase.batch_window_ms,
        "distinct": phase.distinct or None,
        "steps": [
            {"label": s.label, "rate": s.rate, "duration_s": s.duration_s} for s in phase.steps
        ],
        "targets": [t for t in args.targets if t in phase.targets],
    }


def sessions(phases: Sequence[Phase]) -> list[list[Phase]]:
    """Phases grouped by the server process they share: a phase that wants a fresh
    server (to measure its memory from a clean start) opens a new group."""
    groups: list[list[Phase]] = []
    for phase in phases:
        if phase.fresh_server or not groups:
            groups.append([])
        groups[-1].append(phase)
    return groups


async def run_target(
    kind: str, phases: Sequence[Phase], args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    """One target through every phase meant for it, freshly started on a fresh replay
    for each session of phases."""
    out: dict[str, dict[str, Any]] = {}
    mine = [p for p in phases if kind in p.targets]
    for group in sessions(mine):
        out.update(await _run_session(kind, group, args))
    return out


async def _run_session(
    kind: str, phases: Sequence[Phase], args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    symbols = tuple(dict.fromkeys(s for p in phases for s in p.symbols))
    source = _make_source(args, phases)
    upstream = await start_upstream(source)
    out: dict[str, dict[str, Any]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="fanout-") as data_dir:
            log(f"{kind}: replay {args.recording.name} at {upstream.url}")
            async with start_target(
                kind,
                upstream.url,
                symbols,
                Path(data_dir),
                database_url=args.database_url,
                loop=args.server_loop,
            ) as target:
                log(f"{kind}: pid {target.pid} at {target.ws_url}")
                server = Server(
                    target.pid,
                    source,
                    functools.partial(target_stats, target),
                    upstream,
                    target.port,
                )
                ip_base = 0
                for phase in phases:
                    if target.process.returncode is not None:
                        out[phase.name] = {"error": f"{kind} exited ({target.process.returncode})"}
                        continue
                    await prime(source, phase.symbols)
                    feed_clock = isinstance(source, PacedQuoteSource) and source.stamp
                    plans, ip_base = _plans(
                        phase, args, target.ws_url, ip_base, feed_clock=feed_clock
                    )
                    try:
                        report = await run_phase(phase, plans, server, progress_s=args.progress)
                    except (RuntimeError, TimeoutError) as exc:
                        log(f"{kind} {phase.name} failed: {exc}")
                        report = {"error": str(exc), "server_stderr": target.stderr_tail[-5:]}
                    report["target"] = {"kind": kind, "pid": target.pid, "url": target.ws_url}
                    out[phase.name] = report
    finally:
        upstream_figures = describe_upstream(upstream)
        await upstream.close()
    for report in out.values():
        report["upstream_session"] = upstream_figures
    return out


def _flatten(report: dict[str, Any]) -> dict[str, Any]:
    """A one-window phase as one flat object (the window's figures at the top)."""
    windows = report.get("windows") or []
    if len(windows) != 1:
        return report
    flat = {k: v for k, v in report.items() if k != "windows"}
    return {**flat, **windows[0]}


def _config(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "targets": list(args.targets) if args.url is None else [args.url],
        "client_procs": args.procs,
        "recording": str(args.recording) if args.url is None else None,
        "replay": (f"{args.rate:g} quotes/s" if args.rate else f"speed {args.speed}")
        if not args.suite
        else "rate per scenario",
        "deflate": args.deflate,
        "server_loop": args.server_loop,
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
    }


async def run_single(args: argparse.Namespace) -> dict[str, Any]:
    if args.url is not None:
        symbols = tuple(s.strip() for s in (args.symbol_list or "AMZN").split(",") if s.strip())
        phase = single_phase(args, symbols)
        plans, _ = _plans(phase, args, args.url, 0, feed_clock=False)
        report = await run_phase(phase, plans, Server(args.server_pid), progress_s=args.progress)
        return {
            "config": _config(args),
            "phase": _phase_config(phase, args),
            "targets": {"url": _flatten(report)},
        }
    phase = single_phase(args, clone_symbols(BASE_SYMBOL, args.symbols))
    targets: dict[str, dict[str, Any]] = {}
    for kind in args.targets:
        targets[kind] = _flatten((await run_target(kind, [phase], args))[phase.name])
    figures = {k: headline(r) if "error" not in r else None for k, r in targets.items()}
    return {
        "config": _config(args),
        "phase": _phase_config(phase, args),
        "targets": targets,
        "ratios": ratios(figures),
    }


async def run_suite(args: argparse.Namespace) -> dict[str, Any]:
    phases = suite(args.scale, args.duration)
    if args.phases:
        unknown = set(args.phases) - {p.name for p in phases}
        if unknown:
            raise RuntimeError(f"no such scenarios: {', '.join(sorted(unknown))}")
        phases = [p for p in phases if p.name in args.phases]
    by_target = {kind: await run_target(kind, phases, args) for kind in args.targets}
    scenarios: dict[str, Any] = {}
    for phase in phases:
        targets = {k: r[phase.name] for k, r in by_target.items() if phase.name in r}
        scenarios[phase.name] = {
            "config": _phase_config(phase, args),
            "summary": scenario_summary(phase.name, targets),
            "targets": targets,
        }
    return {"config": {**_config(args), "scale": args.scale}, "scenarios": scenarios}


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    # SIGTERM (a CI timeout, kill) stops the run like Ctrl-C does: the servers and client
    # processes it started are stopped on the way out, not left behind.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await (run_suite(args) if args.suite else run_single(args))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    try:
        report = asyncio.run(_main(args))
    except (RuntimeError, TimeoutError) as exc:
        log(f"failed: {exc}")
        return 1
    except asyncio.CancelledError:
        log("stopped")
        return 143
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    text = json.dumps(report, indent=2)
    print(text, flush=True)
    if args.out is not None:
        args.out.write_text(text + "\n")
    if args.suite:
        print(table(report["scenarios"]), file=sys.stderr, flush=True)
        return 0
    subscribed = [r.get("connections", {}).get("subscribed", 0) for r in report["targets"].values()]
    if not any(subscribed):
        log("failed: no subscriber got a quote")
        return 1
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
