"""Redis bus benchmark: market events from a publishing bus through a real redis-server
into a second bus, against the in-process bus, in the same run.

    python -m loadtests.redis_bus_bench [--events 200000] [--symbols 100]
                                        [--rate 10000] [--latency-seconds 5]

Both buses run on one event loop in this process (the receiver's decoding shares the
CPU with the publisher's encoding), so the throughput is a lower bound on what a
second process would see. A redis-server is started on a free loopback port.

Figures (JSON on stdout)
    ``in_process``: events/s through ``InProcessBus`` (publish → handler), the baseline.
    ``redis``: events/s from the first publish to the last event received by the
    other bus, the number of publish round trips (batches) and events per batch.
    ``ratio``: redis / in_process.
    ``latency_us``: at ``--rate`` events/s (paced per millisecond), the time from the
    publish (``received_ns`` stamped just before) to the other bus's handler: p50,
    p99, max.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

from server.delivery.bus import InProcessBus
from server.delivery.redis_bus import RedisBus
from server.delivery.redis_wire import market_codecs
from streams.events import Quote, Received
from tests.support.redis import RedisServer


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
        out.append((f"Q.{sym}", Received(q, n)))
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


async def through_redis(url: str, items: list[tuple[str, Received]]) -> dict[str, float]:
    a, b = RedisBus(url, market_codecs()), RedisBus(url, market_codecs())
    a.start()
    b.start()
    try:
        done = asyncio.Event()
        count = 0

        def on(_: Received) -> None:
            nonlocal count
            count += 1
            if count == len(items):
                done.set()

        topics = sorted({t for t, _ in items})
        for topic in topics:
            b.subscribe(topic, on)
        await b.wait_subscribed(topics, 10)
        start = time.perf_counter()
        for i in range(0, len(items), 1000):  # a feed hands over frames, turn by turn
            for topic, item in items[i : i + 1000]:
                a.publish(topic, item)
            await asyncio.sleep(0)
        await asyncio.wait_for(done.wait(), 120)
        elapsed = time.perf_counter() - start
        return {
            "events_per_s": round(len(items) / elapsed),
            "batches": a.batches,
            "events_per_batch": round(a.sent / max(a.batches, 1), 1),
            "dropped": a.dropped,
        }
    finally:
        await a.close()
        await b.close()


async def latency(url: str, rate: int, seconds: float) -> dict[str, float]:
    a, b = RedisBus(url, market_codecs()), RedisBus(url, market_codecs())
    a.start()
    b.start()
    samples: list[int] = []
    try:
        b.subscribe("Q.LAT", lambda r: samples.append(time.perf_counter_ns() - r.received_ns))
        await b.wait_subscribed(["Q.LAT"], 10)
        per_ms = max(1, rate // 1000)
        n = 0
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            for _ in range(per_ms):
                q = Quote(sym="LAT", bp=100.0, ap=100.05, t=1_700_000_000_000 + n, q=n)
                a.publish("Q.LAT", Received(q, time.perf_counter_ns()))
                n += 1
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.2)
    finally:
        await a.close()
        await b.close()
    samples.sort()
    return {
        "events": len(samples),
        "p50": round(statistics.median(samples) / 1000, 1),
        "p99": round(samples[int(len(samples) * 0.99)] / 1000, 1),
        "max": round(samples[-1] / 1000, 1),
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--latency-seconds", type=float, default=5.0)
    args = parser.parse_args()
    items = events(args.events, [f"S{i:03d}" for i in range(args.symbols)])
    server = RedisServer().start()
    try:
        local = in_process(items)
        redis = await through_redis(server.url, items)
        lat = await latency(server.url, args.rate, args.latency_seconds)
    finally:
        server.remove()
    print(
        json.dumps(
            {
                "events": args.events,
                "in_process": {"events_per_s": round(local)},
                "redis": redis,
                "ratio": round(redis["events_per_s"] / local, 3),
                "latency_us": {"rate": args.rate, **lat},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
