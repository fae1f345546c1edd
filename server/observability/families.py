"""Building Prometheus metric families from the plain values the server keeps.

Names follow Prometheus's conventions: base units in the name (``_seconds``), counters
exposed with ``_total`` (the client library adds it to a counter family's name), and
labels only from closed sets (enum values, a configured universe, error codes).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from server.observability.histogram import LatencyHistogram

if TYPE_CHECKING:
    from server.delivery.firings import LagStats

INF = float("inf")
#: Percentiles of the recent durability lags (alert firings, order ledger).
QUANTILES = (50.0, 99.0)


def counter(name: str, doc: str, value: float, **labels: str) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=list(labels))
    family.add_metric(list(labels.values()), value)
    return family


def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def labelled(
    family: GaugeMetricFamily | CounterMetricFamily, rows: Iterable[tuple[Iterable[str], float]]
) -> GaugeMetricFamily | CounterMetricFamily:
    for labels, value in rows:
        family.add_metric(list(labels), value)
    return family


def by_key(
    family: GaugeMetricFamily | CounterMetricFamily, counts: Mapping[str, int]
) -> GaugeMetricFamily | CounterMetricFamily:
    """One sample per key of ``counts`` (one label), in a stable order."""
    return labelled(family, (((key,), n) for key, n in sorted(counts.items())))


def histogram(name: str, doc: str, hist: LatencyHistogram, **labels: str) -> HistogramMetricFamily:
    """A ``LatencyHistogram`` (µs) as a histogram family in seconds."""
    family = HistogramMetricFamily(name, doc, labels=list(labels))
    family.add_metric(
        list(labels.values()),
        [("+Inf" if le == INF else repr(le), float(n)) for le, n in hist.cumulative()],
        hist.sum_us / 1e6,
    )
    return family


def lag(name: str, doc: str, stats: LagStats) -> Iterator[Metric]:
    """A lag window as quantile gauges (seconds), with its count and maximum."""
    quantiles = GaugeMetricFamily(name + "_seconds", doc, labels=["quantile"])
    for q in QUANTILES:
        quantiles.add_metric([str(q / 100)], stats.percentile(q) / 1000.0)
    yield quantiles
    yield gauge(name + "_max_seconds", doc + " (largest seen)", stats.max_us / 1e6)
    yield counter(name + "_samples", doc + " (commits measured)", stats.count)
