"""A flood of documents that are expensive to validate, from several anonymous clients,
against a server that also streams quotes and answers a control query: how much of the
one event loop the flood takes from everyone else.

    python -m loadtests.flood_bench [--baseline-root DIR] [--senders 4] [--duration 10]

Each run starts ``tickgraph serve`` (zero-config: embedded PostgreSQL, the simulated
market) from this tree and, with ``--baseline-root``, from another checkout (say the
commit before a fix) on the same machine in the same run, one after the other, and
drives both identically:

* ``--senders`` anonymous flooders (in a process of their own), each from its own
  loopback address (127.0.0.2..., so each has its own rate-limit bucket, as distinct
  attackers would), each offering 25 unique documents a second of a few hundred
  same-name fields (under every size limit), whatever the answers;
* a control client (its own address) runs ``{ feedStatus { state } }`` twice a second;
* a subscriber streams quotes of one symbol and records the gaps between messages.

It prints one JSON object: per target, the control query's latency (p50/p99/max) and
the quote stream's largest and p99 gap, measured while the flood runs and in a quiet
window before it, plus what the flood got (answered, refused by rate, by complexity).
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
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import connect

from loadtests.processes import listening_server

HERE = Path(__file__).resolve().parents[1]
QUOTES = 'subscription { quotes(symbols: ["AAPL"]) { symbol sequence } }'


FIELDS = 450
#: Documents each sender offers per second, and how many may wait for an answer.
RATE_PER_SENDER = 25.0
MAX_IN_FLIGHT = 8


def flood_document(fields: int = FIELDS) -> str:
    """A unique document (a comment makes it so, defeating every cache) of ``fields``
    same-name fields: 4 tokens each, under the 2,000-token limit, so only validation
    (or what runs before it) can refuse it."""
    return f"# {uuid.uuid4().hex}\n{{ " + " ".join(["feedStatus { state }"] * fields) + " }"


@contextlib.asynccontextmanager
async def serve(root: Path) -> AsyncIterator[str]:
    """``tickgraph serve --port 0`` from ``root``, on a fresh embedded database."""
    with tempfile.TemporaryDirectory(prefix="tickgraph-flood-") as data_dir:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("TICKGRAPH_", "POLYGON_", "DATABASE_URL", "REDIS_URL"))
        }
        env |= {
            "TICKGRAPH_DATA_DIR": data_dir,
            "TICKGRAPH_SIM_SEED": "7",
            "TICKGRAPH_LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(root),
        }
        async with listening_server(
            ["-m", "server.cli", "serve", "--port", "0"],
            cwd=root,
            env=env,
            what=f"the server from {root}",
            stderr=asyncio.subprocess.DEVNULL,
        ) as address:
            yield address


def client(address: str, local: str) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(local_address=local, retries=0)
    return httpx.AsyncClient(base_url=f"http://{address}", transport=transport, timeout=60)


async def flooder(
    address: str, local: str, rate: float, stop: asyncio.Event, outcomes: Counter[str]
) -> None:
    """Offers ``rate`` documents a second whatever the answers (an open loop, so both
    targets get the same flood and the client's own CPU stays the same), with at most
    ``MAX_IN_FLIGHT`` waiting; past that a send is skipped and counted."""
    in_flight: set[asyncio.Task[None]] = set()
    async with client(address, local) as http:

        async def one() -> None:
            try:
                response = await http.post("/graphql", json={"query": flood_document()})
            except httpx.HTTPError:
                outcomes["transport_error"] += 1
                return
            if response.status_code == 429:
                outcomes["rate_limited"] += 1
                return
            errors = response.json().get("errors") or [{}]
            outcomes[(errors[0].get("extensions") or {}).get("code") or "validation_error"] += 1

        interval = 1.0 / rate
        next_at = time.perf_counter()
        while not stop.is_set():
            if len(in_flight) < MAX_IN_FLIGHT:
                task = asyncio.create_task(one())
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            else:
                outcomes["not_sent_server_too_slow"] += 1
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        if in_flight:
            await asyncio.wait(in_flight, timeout=30)


async def control(address: str, stop: asyncio.Event, latencies: list[float]) -> None:
    async with client(address, "127.0.0.9") as http:
        while not stop.is_set():
            started = time.perf_counter()
            response = await http.post("/graphql", json={"query": "{ feedStatus { state } }"})
            if response.status_code == 200:
                latencies.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.5)


async def subscriber(address: str, stop: asyncio.Event, gaps: list[float]) -> None:
    async with connect(f"ws://{address}/graphql", subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(orjson.dumps({"type": "connection_init", "payload": {}}).decode())
        await ws.recv()
        await ws.send(
            orjson.dumps({"id": "q", "type": "subscribe", "payload": {"query": QUOTES}}).decode()
        )
        last = None
        while not stop.is_set():
            try:
                await asyncio.wait_for(ws.recv(), 1.0)
            except TimeoutError:
                continue
            now = time.perf_counter()
            if last is not None:
                gaps.append((now - last) * 1000)
            last = now


def summary(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None, "n": 0}
    ordered = sorted(values)
    return {
        "p50": round(statistics.median(ordered), 2),
        "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
        "max": round(ordered[-1], 2),
        "n": len(ordered),
    }


async def flood(address: str, duration: float, senders: int) -> dict[str, int]:
    """The flooders, in this process (run as ``--flood ADDRESS``, apart from the
    measuring clients, so that their own CPU does not show up as server latency)."""
    stop = asyncio.Event()
    outcomes: Counter[str] = Counter()
    tasks = [
        asyncio.create_task(flooder(address, f"127.0.0.{2 + i}", RATE_PER_SENDER, stop, outcomes))
        for i in range(senders)
    ]
    await asyncio.sleep(duration)
    stop.set()
    await asyncio.wait(tasks, timeout=60)
    for task in tasks:
        task.cancel()
    return dict(outcomes)


async def phase(address: str, duration: float, senders: int) -> dict[str, Any]:
    stop = asyncio.Event()
    latencies: list[float] = []
    gaps: list[float] = []
    tasks = [
        asyncio.create_task(control(address, stop, latencies)),
        asyncio.create_task(subscriber(address, stop, gaps)),
    ]
    flooding = None
    if senders:
        flooding = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "loadtests.flood_bench",
            "--flood",
            address,
            "--senders",
            str(senders),
            "--duration",
            str(duration),
            cwd=HERE,
            stdout=asyncio.subprocess.PIPE,
        )
    await asyncio.sleep(duration)
    outcomes: dict[str, int] = {}
    if flooding is not None:
        out, _ = await flooding.communicate()
        outcomes = json.loads(out)
    stop.set()
    await asyncio.wait(tasks, timeout=60)
    for task in tasks:
        task.cancel()
    return {
        "control_ms": summary(latencies),
        "quote_gap_ms": summary(gaps),
        "flood": outcomes,
    }


async def measure(root: Path, duration: float, senders: int) -> dict[str, Any]:
    async with serve(root) as address:
        await asyncio.sleep(3)  # the feed connects, the symbols prime
        quiet = await phase(address, duration / 2, 0)
        flooded = await phase(address, duration, senders)
    return {"root": str(root), "quiet": quiet, "flooded": flooded}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {
        "senders": args.senders,
        "duration_s": args.duration,
        "document_fields": FIELDS,
        "offered_per_s": RATE_PER_SENDER * args.senders,
    }
    if args.baseline_root:
        result["baseline"] = await measure(args.baseline_root, args.duration, args.senders)
    result["tickgraph"] = await measure(HERE, args.duration, args.senders)
    if "baseline" in result:
        before, after = result["baseline"]["flooded"], result["tickgraph"]["flooded"]
        result["control_p99_ratio_after_vs_before"] = _ratio(
            after["control_ms"]["p99"], before["control_ms"]["p99"]
        )
        result["quote_gap_max_ratio_after_vs_before"] = _ratio(
            after["quote_gap_ms"]["max"], before["quote_gap_ms"]["max"]
        )
    return result


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--baseline-root", type=lambda p: Path(p).resolve(), help="another checkout to measure"
    )
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--flood", metavar="ADDRESS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flood:
        print(json.dumps(asyncio.run(flood(args.flood, args.duration, args.senders))))
    else:
        print(json.dumps(asyncio.run(main(args)), indent=2))
