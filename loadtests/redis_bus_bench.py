"""Redis bus benchmark: market events from a publishing bus through a real redis-server
into a bus in a SECOND PROCESS (as a follower's), against the in-process bus, in the
same run.

    python -m loadtests.redis_bus_bench [--events 200000] [--symbols 100] [--repeats 5]
                                        [--rate 10000] [--latency-seconds 3]
                                        [--latency-repeats 3] [--loop uvloop]

A redis-server is started on a free loopback port; the receiver is
``loadtests.redis_bus_receiver`` in its own process (its own event loop and core), so
the publisher's encoding and the receiver's decoding run in parallel, as they would
on a leader and a follower. Both run on ``--loop`` (tickgraph's default is uvloop).

Figures (JSON on stdout; every repeat listed, the headline is the median)
    ``in_process``: events/s through ``InProcessBus`` (publish → handler), the baseline.
    ``redis``: events/s from the first publish to the last event the other process
    received; publish round trips (batches) and events per batch; dropped.
    ``ratio``: redis / in_process (medians).
    ``latency_us``: at ``--rate`` events/s (paced per millisecond, as a feed hands over
    frames), the time from the stamp (``received_ns``, ``time.time_ns()`` just before
    the publish, as the feed stamps it) to the other process's handler: p50, p99, max
    per repeat and their medians; ``in_process`` is the same through ``InProcessBus``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from redis.asyncio import ConnectionPool

from loadtests.redis_bus_receiver import percentiles_us
from server.delivery.bus import InProcessBus
from server.delivery.redis_bus import RedisBus
from server.delivery.redis_wire import Replies, market_codecs
from streams.events import Quote, Received
from tests.support.redis import RedisServer

ROOT = Path(__file__).resolve().parents[1]
#: Events handed to the bus per loop turn in the throughput run (a feed's frame holds
#: many; the writer sends what gathered while it waited for Redis).
TURN = 1000
LATENCY_TOPIC = "Q.LAT"


def events(count: int, symbols: list[str]) -> list[tuple[str, Received]]:
    out = []
    for n in range(count):
        sym = symbols[n % len(symbols)]
        q = Quote(
            sym=sym,
            bp=100.0 + n % 97 / 100,
            ap=100.05 + n % 97 / 100,
            t=1_700_000_000_000 + n,
            bs=300,
            ask_size=200,
            q=n,
        )
        out.append((f"Q.{sym}", Received(q, time.time_ns())))
    return out


def in_process(items: list[tuple[str, Received]]) -> float:
    bus = InProcessBus()
    got: list[Received] = []
    for topic in {t for t, _ in items}:
        bus.subscribe(topic, got.append)
    start = time.perf_counter()
    for topic, item in items:
        bus.publish(topic, item)
    return len(items) / (time.perf_counter() - start)


class Receiver:
    """``loadtests.redis_bus_receiver`` in its own process, one round at a time."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, url: str, topics: list[str], loop: str) -> Receiver:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "loadtests.redis_bus_receiver",
            "--url",
            url,
            "--topics",
            ",".join(topics),
            "--loop",
            loop,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        receiver = cls(proc)
        line = await asyncio.wait_for(receiver._line(), 60)
        if line != "ready":
            raise RuntimeError(f"receiver did not get ready: {line!r}")
        return receiver

    async def _line(self) -> str:
        assert self.proc.stdout is not None
        raw = await self.proc.stdout.readline()
        if not raw:
            raise RuntimeError(f"receiver exited ({await self.proc.wait()})")
        return raw.decode().strip()

    async def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    async def begin(self, line: str) -> None:
        """Start a round (``count N`` / ``latency N``) and wait until the receiver has."""
        await self.send(line)
        answer = await asyncio.wait_for(self._line(), 30)
        if answer != "started":
            raise RuntimeError(f"receiver answered {answer!r} to {line!r}")

    async def result(self, timeout: float) -> dict[str, Any]:
        """The round's report: when it has everything, or what it has after ``timeout``."""
        try:
            line = await asyncio.wait_for(self._line(), timeout)
        except TimeoutError:
            await self.send("done")
            line = await asyncio.wait_for(self._line(), 10)
        body: dict[str, Any] = json.loads(line)
        return body

    async def close(self) -> None:
        if self.proc.returncode is None:
            await self.send("quit")
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def through_redis(
    url: str, receiver: Receiver, items: list[tuple[str, Received]]
) -> dict[str, Any]:
    bus = RedisBus(url, market_codecs())
    bus.start()
    try:
        await receiver.begin(f"count {len(items)}")
        start_ns = time.time_ns()
        for i in range(0, len(items), TURN):
            for topic, item in items[i : i + TURN]:
                bus.publish(topic, item)
            await asyncio.sleep(0)
        published_s = (time.time_ns() - start_ns) / 1e9
        got = await receiver.result(120)
        await bus.wait_sent(30)
        elapsed = (got["last_ns"] - start_ns) / 1e9
        return {
            "events_per_s": round(got["count"] / elapsed),
            "received": got["count"],
            "publish_loop_events_per_s": round(len(items) / published_s),
            "batches": bus.batches,
            "events_per_batch": round(bus.sent / max(bus.batches, 1), 1),
            "dropped": bus.dropped,
        }
    finally:
        await bus.close()


async def paced(publish: Any, rate: int, seconds: float) -> int:
    """Publish ``rate`` quotes/s on ``LATENCY_TOPIC`` for ``seconds``, a millisecond's
    worth per loop turn, each stamped just before its publish; returns how many."""
    per_ms = max(1, rate // 1000)
    n = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        due = int(elapsed * rate) + per_ms  # catch up after an oversleep, never burst ahead
        while n < due:
            q = Quote(sym="LAT", bp=100.0, ap=100.05, t=1_700_000_000_000 + n, q=n)
            publish(LATENCY_TOPIC, Received(q, time.time_ns()))
            n += 1
        await asyncio.sleep(0.001)
    return n


async def latency_redis(url: str, receiver: Receiver, rate: int, seconds: float) -> dict[str, Any]:
    bus = RedisBus(url, market_codecs())
    bus.start()
    try:
        await receiver.begin(f"latency {round(rate * seconds) + rate}")  # more than will come
        sent = await paced(bus.publish, rate, seconds)
        await asyncio.sleep(0.5)
        got = await receiver.result(0)
        return {"published": sent, "received": got["count"], **got["latency_us"]}
    finally:
        await bus.close()


async def latency_local(rate: int, seconds: float) -> dict[str, Any]:
    bus = InProcessBus()
    samples: list[int] = []
    bus.subscribe(LATENCY_TOPIC, lambda r: samples.append(time.time_ns() - r.received_ns))
    sent = await paced(bus.publish, rate, seconds)
    return {"published": sent, "received": len(samples), **percentiles_us(samples)}


async def fast_replies(url: str) -> bool:
    """Whether the bus reads replies straight from hiredis (``Replies.fast``)."""
    pool = ConnectionPool.from_url(url, protocol=2)
    conn = pool.make_connection()  # type: ignore[no-untyped-call]
    try:
        await conn.connect()
        return Replies(conn).fast
    finally:
        await pool.disconnect()
        await conn.disconnect()


def median_of(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return round(statistics.median(values), 1) if values else None


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    symbols = [f"S{i:03d}" for i in range(args.symbols)]
    topics = [f"Q.{s}" for s in symbols]
    server = RedisServer().start()
    try:
        receiver = await Receiver.start(server.url, [*topics, LATENCY_TOPIC], args.loop)
        try:
            fast = await fast_replies(server.url)
            local: list[float] = []
            redis: list[dict[str, Any]] = []
            for _ in range(args.repeats):  # interleaved: both see the same machine load
                items = events(args.events, symbols)
                local.append(round(in_process(items)))
                redis.append(await through_redis(server.url, receiver, items))
            lat_redis: list[dict[str, Any]] = []
            lat_local: list[dict[str, Any]] = []
            for _ in range(args.latency_repeats):
                lat_local.append(await latency_local(args.rate, args.latency_seconds))
                lat_redis.append(
                    await latency_redis(server.url, receiver, args.rate, args.latency_seconds)
                )
        finally:
            await receiver.close()
    finally:
        server.remove()
    local_median = statistics.median(local)
    redis_median = statistics.median(r["events_per_s"] for r in redis)
    return {
        "config": {
            "events": args.events,
            "symbols": args.symbols,
            "repeats": args.repeats,
            "loop": args.loop,
            "replies_from_hiredis": fast,
            "cpu_count": os.cpu_count(),
            "load_average": os.getloadavg(),
            "python": sys.version.split()[0],
        },
        "in_process": {"events_per_s": round(local_median), "repeats": local},
        "redis": {"events_per_s": round(redis_median), "repeats": redis},
        "ratio": round(redis_median / local_median, 3),
        "target_events_per_s": 200_000,
        "latency_us": {
            "rate": args.rate,
            "seconds": args.latency_seconds,
            "redis": {
                "p50": median_of(lat_redis, "p50"),
                "p99": median_of(lat_redis, "p99"),
                "max": median_of(lat_redis, "max"),
                "repeats": lat_redis,
            },
            "in_process": {
                "p50": median_of(lat_local, "p50"),
                "p99": median_of(lat_local, "p99"),
                "max": median_of(lat_local, "max"),
                "repeats": lat_local,
            },
            "target": {"p50": 1000, "p99": 5000},
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--latency-seconds", type=float, default=3.0)
    parser.add_argument("--latency-repeats", type=int, default=3)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        report = uvloop.run(bench(args))
    else:
        report = asyncio.run(bench(args))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
