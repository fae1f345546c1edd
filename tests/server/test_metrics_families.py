"""The pieces ``/metrics`` is built from: the integer histogram, and the bus protocol that
exports any bus's counters (the in-process bus's, and a shared bus's such as the Redis
one) without the collector knowing its class."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from server.delivery.bus import InProcessBus
from server.observability.bus_metrics import bus_families
from server.observability.families import histogram
from server.observability.histogram import LatencyHistogram


class _Families(Collector):
    def __init__(self, families: list[Any]) -> None:
        self._families = families

    def collect(self) -> Any:
        return iter(self._families)


def exposition(
    families: list[Any],
) -> dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    """What a scraper reads: family name → {(sample name, labels): value}."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    out: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        out[family.name] = {
            (s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples
        }
    return out


def test_histogram_buckets_are_upper_bounds_inclusive() -> None:
    h = LatencyHistogram((100, 1_000))
    for us in (0, 100, 101, 1_000, 1_001, -5):
        h.record_us(us)
    h.record_ns(2_500_000)  # 2.5 ms
    assert h.counts == [3, 2, 2]  # <=100 µs (a clock step counts as 0), <=1 ms, above
    assert h.count == 7 and h.sum_us == 0 + 100 + 101 + 1_000 + 1_001 + 0 + 2_500
    assert list(h.cumulative()) == [(0.0001, 3), (0.001, 5), (float("inf"), 7)]
    with pytest.raises(ValueError):
        LatencyHistogram((10, 5))

    samples = exposition([histogram("t_latency_seconds", "doc", h, kind="x")])["t_latency_seconds"]
    bucket = "t_latency_seconds_bucket"
    assert samples[(bucket, (("kind", "x"), ("le", "0.0001")))] == 3
    assert samples[(bucket, (("kind", "x"), ("le", "+Inf")))] == 7
    assert samples[("t_latency_seconds_count", (("kind", "x"),))] == 7
    assert samples[("t_latency_seconds_sum", (("kind", "x"),))] == pytest.approx(0.004702)


class _SharedBus:
    """Shaped like the Redis bus of another branch: counters as attributes, no stats()."""

    def __init__(self) -> None:
        self.published, self.sent, self.batches, self.dropped = 10, 9, 3, 1
        self.received, self.stale, self.decode_errors = 7, 2, 1
        self.handler_errors, self.reconnects, self.connected = 0, 4, True
        self.name = "not a figure"


class _StatsBus:
    def stats(self) -> dict[str, Any]:
        lag = LatencyHistogram()
        lag.record_us(1_500)
        return {
            "received": 5,
            "lag": lag,
            "oldest_pending_seconds": 0.25,
            "Bad-Name": 3,  # not a valid family name: skipped
        }


def test_any_bus_is_exported_through_its_counters() -> None:
    shared = exposition(list(bus_families(_SharedBus())))
    assert shared["tickgraph_bus_received"][("tickgraph_bus_received_total", ())] == 7
    assert shared["tickgraph_bus_stale"][("tickgraph_bus_stale_total", ())] == 2
    assert shared["tickgraph_bus_reconnects"][("tickgraph_bus_reconnects_total", ())] == 4
    assert shared["tickgraph_bus_connected"][("tickgraph_bus_connected", ())] == 1
    assert {f"tickgraph_bus_{n}" for n in ("sent", "batches", "dropped", "decode_errors")} <= set(
        shared
    )
    assert "tickgraph_bus_name" not in shared

    via_stats = exposition(list(bus_families(_StatsBus())))
    assert via_stats["tickgraph_bus_lag_seconds"][("tickgraph_bus_lag_seconds_count", ())] == 1
    assert via_stats["tickgraph_bus_oldest_pending_seconds"][
        ("tickgraph_bus_oldest_pending_seconds", ())
    ] == pytest.approx(0.25)
    assert set(via_stats) == {
        "tickgraph_bus_received",
        "tickgraph_bus_lag_seconds",
        "tickgraph_bus_oldest_pending_seconds",
    }

    bus = InProcessBus()
    bus.subscribe("T.X", lambda _: None)
    bus.publish("T.X", object())
    local = exposition(list(bus_families(bus)))
    assert local["tickgraph_bus_published"][("tickgraph_bus_published_total", ())] == 1
    assert local["tickgraph_bus_handler_errors"][("tickgraph_bus_handler_errors_total", ())] == 0
