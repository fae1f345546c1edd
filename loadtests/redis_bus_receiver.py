"""The receiving side of ``loadtests.redis_bus_bench``: a ``RedisBus`` in a process of
its own, as a follower's would be, driven by its parent over stdin/stdout.

    python -m loadtests.redis_bus_receiver --url redis://... --topics Q.S000,Q.S001

It subscribes to ``--topics``, waits until Redis has acknowledged every subscription
and prints ``ready``. Then, per round, the parent writes one line:

``count N``
    answer ``started``, count deliveries; at the N-th, print ``{"count", "first_ns",
    "last_ns"}`` (epoch ns, ``time.time_ns``: the clock the feed stamps
    ``received_ns`` with).
``latency N``
    the same, and keep ``time.time_ns() - received_ns`` of each delivery; the report
    adds its p50/p99/max in µs.
``done``
    report the round now with whatever arrived (messages lost or late).
``quit``
    close the bus and exit.

The handler of a ``count`` round does no more than the in-process baseline's (an
integer increment), so the figure is what the bus costs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from typing import Any

from server.delivery.redis_bus import RedisBus
from server.delivery.redis_wire import market_codecs
from streams.events import Received


def percentiles_us(samples_ns: list[int]) -> dict[str, float | None]:
    """p50 / p99 / max of latencies in ns, as µs (None when there are none)."""
    if not samples_ns:
        return {"p50": None, "p99": None, "max": None}
    ordered = sorted(samples_ns)

    def at(q: float) -> int:
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))]

    return {
        "p50": round(at(0.5) / 1000, 1),
        "p99": round(at(0.99) / 1000, 1),
        "max": round(ordered[-1] / 1000, 1),
    }


class Round:
    """One measured round: what arrived, when, and (for latency) how late."""

    def __init__(self, expected: int, keep_latency: bool) -> None:
        self.expected = expected
        self.keep_latency = keep_latency
        self.count = 0
        self.first_ns = 0
        self.last_ns = 0
        self.samples: list[int] = []
        self.reported = False

    def on_message(self, item: Received) -> None:
        if self.count == 0:
            self.first_ns = time.time_ns()
        self.count += 1
        if self.keep_latency:
            self.samples.append(time.time_ns() - item.received_ns)
        if self.count == self.expected:
            self.last_ns = time.time_ns()
            self.report()

    def report(self) -> None:
        if self.reported:
            return
        self.reported = True
        body: dict[str, Any] = {
            "count": self.count,
            "first_ns": self.first_ns,
            "last_ns": self.last_ns or time.time_ns(),
        }
        if self.keep_latency:
            body["latency_us"] = percentiles_us(self.samples)
        print(json.dumps(body), flush=True)


async def run(url: str, topics: list[str]) -> None:
    bus = RedisBus(url, market_codecs())
    bus.start()
    current: list[Round] = [Round(0, False)]
    current[0].reported = True

    def on_message(item: Received) -> None:
        current[0].on_message(item)

    try:
        for topic in topics:
            bus.subscribe(topic, on_message)
        await bus.wait_subscribed(topics, 30)
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := (await reader.readline()).decode().split():
            verb = line[0]
            if verb in ("count", "latency"):
                current[0] = Round(int(line[1]), keep_latency=verb == "latency")
                print("started", flush=True)
            elif verb == "done":
                current[0].report()
            elif verb == "quit":
                break
    finally:
        await bus.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--topics", required=True, help="comma-separated, e.g. Q.S000,Q.S001")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args()
    topics = [t for t in args.topics.split(",") if t]
    if args.loop == "uvloop":
        import uvloop

        runner: Any = uvloop.run
    else:
        runner = asyncio.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(run(args.url, topics))


if __name__ == "__main__":
    main()
