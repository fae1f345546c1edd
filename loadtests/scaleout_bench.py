"""Scale-out fan-out benchmark: N WebSocket subscribers of ``quotes`` spread over two
real ``tickgraph serve`` processes (a leader and a follower sharing one Redis and one
PostgreSQL) against all N on one of them, under the same offered load, in one run.

    python -m loadtests.scaleout_bench [--clients 1000] [--symbols 10] [--rate 1000]
                                       [--duration 5] [--repeats 3] [--procs 2]

One replay (``loadtests.fanout_pacing.PacedQuoteSource``: the AMZN recording cloned
under ``--symbols`` symbols, ``--rate`` quotes/s in total, each stamped with the time
it is sent) feeds the leader, which alone holds the upstream connection; the follower
gets every event through the Redis bus and serves its subscribers from its own copy.
Both processes stay up for the whole run, and the two layouts alternate, repeat by
repeat, so both see the same machine:

- ``one``: all ``--clients`` subscribers on the leader (the baseline: one process
  serving everyone, as without scale-out; the follower idles beside it, receiving the
  bus's events as it would anyway);
- ``two``: the same subscribers, every other one on the follower.

Subscribers, windows and figures are the fan-out harness's (``loadtests.fanout_*``):
each subscribes once to ``--symbols-per-client`` symbols; ``deliveries_per_s`` counts
quotes that arrived during the window; ``server_cpu_percent`` is both servers' CPU
over the window (100 = one core) and ``deliveries_per_server_cpu_s`` what a second of
their CPU delivers; ``feed_latency_ms`` runs from the replay's
send to the subscriber's read, so on the follower it includes the Redis hop. Each
layout's figures are medians over ``--repeats``; ``ratio`` is two ÷ one.

On a 2-core machine the client processes, both servers and Redis share the same two
cores: the ratio says what spreading subscribers costs or gains under that, not what
two machines would do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtests.fanout import DEFAULT_RECORDING
from loadtests.fanout_clients import ProcessPlan
from loadtests.fanout_measure import PhasePlans, Server, cpu_percent, log, prime, run_phase
from loadtests.fanout_pacing import PacedQuoteSource
from loadtests.fanout_scenarios import (
    BASE_SYMBOL,
    ClientLayout,
    Phase,
    Step,
    clients_per_ip,
    plan_connections,
    split_processes,
)
from loadtests.fanout_server import (
    _SCRUBBED_PREFIXES,
    ProcSample,
    clone_symbols,
    describe_upstream,
    sample_process,
    start_upstream,
)
from loadtests.fanout_summary import headline
from loadtests.processes import bench_database, listening_server
from server.auth.tokens import KeyRing
from tests.support.redis import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[1]
LAYOUTS = ("one", "two")


@dataclass
class Member:
    name: str
    port: int
    pid: int

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"

    def role(self) -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
        except OSError:
            return "down"
        role: str = body.get("role", "starting")
        return role

    async def wait_role(self, role: str, limit: float) -> None:
        deadline = time.monotonic() + limit
        while (seen := await asyncio.to_thread(self.role)) != role:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} is {seen}, not {role}, after {limit:.0f}s")
            await asyncio.sleep(0.2)


def member_env(
    name: str, port: int, *, upstream: str, symbols: tuple[str, ...], common: dict[str, str]
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
    env.update(common)
    env.update(
        PYTHONPATH=str(ROOT),
        POLYGON_WS_URL=upstream,
        TICKGRAPH_SYMBOLS=",".join(symbols),
        TICKGRAPH_DATA_DIR=common["TICKGRAPH_DATA_DIR"] + f"/{name}",
        TICKGRAPH_ADVERTISE_URL=f"http://127.0.0.1:{port}",
        TICKGRAPH_ALLOW_ANONYMOUS="true",
        TICKGRAPH_LOG_LEVEL="WARNING",
        TICKGRAPH_EVENT_LOOP="uvloop",
    )
    return env


@contextlib.asynccontextmanager
async def member(
    name: str, *, upstream: str, symbols: tuple[str, ...], common: dict[str, str]
) -> AsyncIterator[Member]:
    port = free_port()
    env = member_env(name, port, upstream=upstream, symbols=symbols, common=common)
    await asyncio.to_thread(Path(env["TICKGRAPH_DATA_DIR"]).mkdir, parents=True, exist_ok=True)
    args = ["-m", "server.cli", "serve", "--port", str(port)]
    async with listening_server(args, cwd=ROOT, env=env, what=name) as address:
        pid = await asyncio.to_thread(_pid_listening, int(address.rsplit(":", 1)[1]))
        yield Member(name, port, pid)


def _pid_listening(port: int) -> int:
    """The pid of the process listening on ``port`` (the server, not its parent):
    found through /proc, socket inode by inode."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        if int(parts[1].split(":")[1], 16) == port and parts[3] == "0A":
            inode = parts[9]
            break
    if inode is None:
        raise RuntimeError(f"nothing listens on {port}")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) == f"socket:[{inode}]":
                    return int(proc.name)
    raise RuntimeError(f"no process owns the socket listening on {port}")


def plans_for(
    layout: str, phase: Phase, members: tuple[Member, Member], args: argparse.Namespace, ip: int
) -> tuple[PhasePlans, int]:
    """The phase's subscribers: all on the leader (``one``) or alternately on both."""
    per_ip = clients_per_ip(args.clients_per_ip, phase.symbols_per_client, len(phase.symbols))
    client_layout = ClientLayout(per_ip, ip_base=ip)
    connections = plan_connections(phase, client_layout, feed_clock=True)
    leader, follower = members
    if layout == "one":
        plans = split_processes(connections, args.procs, leader.ws_url)
    else:
        half = max(1, args.procs // 2)
        plans = [
            *split_processes(connections[0::2], half, leader.ws_url),
            *split_processes(connections[1::2], half, follower.ws_url, first_index=half),
        ]
    plans = [
        ProcessPlan(p.index, p.url, p.connections, connect_concurrency=args.connect_concurrency)
        for p in plans
    ]
    return PhasePlans(fast=plans), ip + client_layout.addresses(phase.clients)


@dataclass
class Deployment(Server):
    """The server under test as the fan-out harness samples it at each window's edges:
    here both processes, CPU and memory summed (in the ``one`` layout the follower
    still receives and decodes every event from the bus: it is part of the cost)."""

    pids: tuple[int, ...] = ()

    def sample(self) -> ProcSample | None:
        samples = [sample_process(pid) for pid in self.pids]
        if any(s is None for s in samples):
            return None
        present = [s for s in samples if s is not None]
        return ProcSample(
            at=max(s.at for s in present),
            cpu_s=sum(s.cpu_s for s in present),
            rss_bytes=sum(s.rss_bytes for s in present),
            hwm_bytes=sum(s.hwm_bytes for s in present),
            threads=sum(s.threads for s in present),
        )


async def measure(  # noqa: PLR0917 (one call site, every argument distinct)
    layout: str,
    phase: Phase,
    members: tuple[Member, Member],
    source: PacedQuoteSource,
    upstream: Any,
    args: argparse.Namespace,
    ip: int,
) -> tuple[dict[str, Any], int]:
    await prime(source, phase.symbols)
    plans, ip = plans_for(layout, phase, members, args, ip)
    leader = members[0]
    server = Deployment(
        leader.pid, source, None, upstream, leader.port, pids=tuple(m.pid for m in members)
    )
    before = [sample_process(m.pid) for m in members]
    report = await run_phase(phase, plans, server, progress_s=args.progress)
    after = [sample_process(m.pid) for m in members]
    windows = report.get("windows") or [{}]
    window = windows[0]
    figures = headline(window)
    both = figures.get("server_cpu_percent")
    figures.update(
        # Deliveries per second of CPU of the two servers: what a delivery costs.
        deliveries_per_server_cpu_s=(
            round(figures["deliveries_per_s"] / (both / 100)) if both else None
        ),
        layout=layout,
        subscribed=report.get("connections", {}).get("subscribed"),
        feed_latency_ms=window.get("feed_latency_ms"),
        # Per process, over the whole phase (connecting included); ``server_cpu_percent``
        # is both processes over the measured window.
        phase_cpu_percent={
            m.name: cpu_percent(b, a) for m, b, a in zip(members, before, after, strict=True)
        },
    )
    if "error" in report:
        figures["error"] = report["error"]
    return figures, ip


def median(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if isinstance(r.get(key), int | float)]
    return round(statistics.median(values), 1) if values else None


def median_feed(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [
        r["feed_latency_ms"][key]
        for r in rows
        if isinstance((r.get("feed_latency_ms") or {}).get(key), int | float)
    ]
    return round(statistics.median(values), 1) if values else None


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "deliveries_per_s": median(rows, "deliveries_per_s"),
        "delivered_fraction": median(rows, "delivered_fraction"),
        "servers_cpu_percent": median(rows, "server_cpu_percent"),
        "deliveries_per_server_cpu_s": median(rows, "deliveries_per_server_cpu_s"),
        "feed_latency_p50_ms": median_feed(rows, "p50"),
        "feed_latency_p99_ms": median_feed(rows, "p99"),
        "repeats": rows,
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    symbols = clone_symbols(BASE_SYMBOL, args.symbols)
    phase = Phase(
        "scaleout",
        symbols,
        args.clients,
        min(args.symbols_per_client, len(symbols)),
        (Step("steady", args.duration, rate=args.rate, warmup_s=args.warmup),),
        targets=("tickgraph",),
    )
    source = PacedQuoteSource(args.recording, symbols, rate=args.rate)
    upstream = await start_upstream(source)
    redis = RedisServer().start()
    rows: dict[str, list[dict[str, Any]]] = {layout: [] for layout in LAYOUTS}
    try:
        with (
            bench_database("scaleout-bench-") as database_url,
            tempfile.TemporaryDirectory(prefix="scaleout-") as tmp,
        ):
            keys = Path(tmp) / "keys.pem"
            KeyRing.load_or_create(keys)
            common = {
                "DATABASE_URL": database_url,
                "REDIS_URL": redis.url,
                "TICKGRAPH_JWT_PRIVATE_KEYS": keys.read_text(),
                "TICKGRAPH_DATA_DIR": tmp,
            }
            async with contextlib.AsyncExitStack() as stack:
                leader = await stack.enter_async_context(
                    member("leader", upstream=upstream.url, symbols=symbols, common=common)
                )
                await leader.wait_role("leader", 60)
                follower = await stack.enter_async_context(
                    member("follower", upstream=upstream.url, symbols=symbols, common=common)
                )
                await follower.wait_role("follower", 60)
                log(f"leader pid {leader.pid} :{leader.port}, follower {follower.pid}")
                ip = 0
                for repeat in range(args.repeats):
                    order = LAYOUTS if repeat % 2 == 0 else LAYOUTS[::-1]
                    for layout in order:
                        log(f"repeat {repeat + 1}/{args.repeats}: {layout}")
                        row, ip = await measure(
                            layout, phase, (leader, follower), source, upstream, args, ip
                        )
                        rows[layout].append(row)
    finally:
        upstream_figures = describe_upstream(upstream)
        await upstream.close()
        redis.stop()
        redis.remove()
    one, two = summary(rows["one"]), summary(rows["two"])
    ratio = (
        round(two["deliveries_per_s"] / one["deliveries_per_s"], 3)
        if one["deliveries_per_s"] and two["deliveries_per_s"]
        else None
    )
    return {
        "config": {
            "clients": args.clients,
            "symbols": args.symbols,
            "symbols_per_client": phase.symbols_per_client,
            "rate": args.rate,
            "offered_deliveries_per_s": args.rate
            * phase.symbols_per_client
            * args.clients
            / len(symbols),
            "duration_s": args.duration,
            "repeats": args.repeats,
            "client_procs": args.procs,
            "cpu_count": os.cpu_count(),
            "load_average": os.getloadavg(),
            "python": sys.version.split()[0],
        },
        "one_process": one,
        "two_processes": two,
        "ratio_two_vs_one": ratio,
        "upstream": upstream_figures,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--symbols", type=int, default=10)
    p.add_argument("--symbols-per-client", type=int, default=1)
    p.add_argument("--rate", type=float, default=1000.0, help="quotes/s offered in total")
    p.add_argument("--duration", type=float, default=5.0, help="measured window, s")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--procs", type=int, default=2, help="client processes (even: half each)")
    p.add_argument("--clients-per-ip", type=int, default=5)
    p.add_argument("--connect-concurrency", type=int, default=50)
    p.add_argument("--progress", type=float, default=5.0)
    p.add_argument("--recording", type=Path, default=DEFAULT_RECORDING)
    p.add_argument("--out", type=Path)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    report = asyncio.run(bench(args))
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    text = json.dumps(report, indent=2)
    print(text, flush=True)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
