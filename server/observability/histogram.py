"""A latency histogram of plain integers, for the components that time something.

Why not ``prometheus_client.Histogram``: its ``observe`` takes a lock and walks the
buckets in Python on every call; the places that time things here (a delivery flush,
an Alpaca REST call, a database query) keep this instead (one ``bisect`` into a tuple
of integer bounds and three integer additions) and ``/metrics`` turns it into a
histogram family when it is scraped (``server.observability.metrics``). Pure: no I/O,
no client library, usable from ``brokers`` and the delivery path alike.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

#: Upper bounds in microseconds: 50 µs to 10 s, roughly 1-2.5-5 per decade. Deliveries
#: live at the low end, REST calls and queries in the middle, a stalled call at the top.
DEFAULT_BOUNDS_US: tuple[int, ...] = (
    50,
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
)


class LatencyHistogram:
    """Counts of durations (µs) per bucket, their sum and their count.

    ``counts[i]`` counts durations ``<= bounds[i]`` and above the previous bound (not
    cumulative); the last slot counts those above every bound (Prometheus's ``+Inf``).
    """

    __slots__ = ("bounds_us", "count", "counts", "sum_us")

    def __init__(self, bounds_us: tuple[int, ...] = DEFAULT_BOUNDS_US) -> None:
        if not bounds_us or list(bounds_us) != sorted(set(bounds_us)) or bounds_us[0] <= 0:
            raise ValueError("bounds must be positive, strictly increasing and not empty")
        self.bounds_us = bounds_us
        self.counts = [0] * (len(bounds_us) + 1)
        self.sum_us = 0
        self.count = 0

    def record_us(self, us: int) -> None:
        """One duration in whole microseconds (a negative one, from a clock step, is 0)."""
        us = max(us, 0)
        self.counts[bisect_left(self.bounds_us, us)] += 1
        self.sum_us += us
        self.count += 1

    def record_ns(self, ns: int) -> None:
        self.record_us(ns // 1000)

    def cumulative(self) -> Iterator[tuple[float, int]]:
        """``(upper bound in seconds, count <= it)`` per bucket, ``+Inf`` last: the
        exposition format's buckets."""
        running = 0
        for bound, n in zip(self.bounds_us, self.counts, strict=False):
            running += n
            yield bound / 1e6, running
        yield float("inf"), running + self.counts[-1]
