"""The server's figures as Prometheus metric families, read when Prometheus scrapes.

Why a collector and not client-library counters: the hot path (decode → state → bus →
bars → alerts → delivery) already keeps plain integer counters where it needs them
(``FeedStatusTracker.events``, ``Lane.conflated``, ``OrderLedger.written``...).
Incrementing a ``prometheus_client.Counter`` per tick as well would take a lock and a
label lookup per event; reading the integers we already have once per scrape costs the
hot path nothing. Every value here is read on the event loop (the scrape handler is
async and never yields while collecting), so no dict is read while it is being changed.

Counters are monotonic over the process's life; gauges are "now". The families and
their labels are listed in docs/operations.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from server.limits.errors import DENIALS
from streams.feed_status import FeedState

if TYPE_CHECKING:
    from server.delivery.firings import LagStats
    from server.runtime import Runtime

#: Reads the running server, None while it starts or stops.
RuntimeRef = Callable[[], "Runtime | None"]

#: Percentiles of the recent durability lags (alert firings, order ledger).
_QUANTILES = (50.0, 99.0)


def _counter(name: str, doc: str, value: float, **labels: str) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=list(labels))
    family.add_metric(list(labels.values()), value)
    return family


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _labelled(
    family: GaugeMetricFamily | CounterMetricFamily, rows: Iterable[tuple[Iterable[str], float]]
) -> GaugeMetricFamily | CounterMetricFamily:
    for labels, value in rows:
        family.add_metric(list(labels), value)
    return family


def _lag(name: str, doc: str, lag: LagStats) -> Iterator[Metric]:
    """A lag window as quantile gauges (seconds), with its count and maximum."""
    quantiles = GaugeMetricFamily(name + "_seconds", doc, labels=["quantile"])
    for q in _QUANTILES:
        quantiles.add_metric([str(q / 100)], lag.percentile(q) / 1000.0)
    yield quantiles
    yield _gauge(name + "_max_seconds", doc + " (largest seen)", lag.max_us / 1e6)
    yield _counter(name + "_samples", doc + " (commits measured)", lag.count)


class TickgraphCollector(Collector):
    """Reads the running server's counters; without a running server (starting up,
    stopping) only ``tickgraph_up 0``."""

    def __init__(
        self,
        runtime: RuntimeRef,
        *,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._runtime = runtime
        self._clock_ns = clock_ns

    def describe(self) -> list[Metric]:
        # Families depend on what runs; an empty description keeps the registry from
        # collecting at registration time (the runtime may not exist yet).
        return []

    def collect(self) -> Iterator[Metric]:
        runtime = self._runtime()
        yield _gauge("tickgraph_up", "1 while the server runs and serves", runtime is not None)
        yield self._denials()
        if runtime is None:
            return
        yield from self._feed(runtime)
        yield from self._market(runtime)
        yield from self._delivery(runtime)
        yield from self._alerts(runtime)
        yield from self._orders(runtime)
        yield from self._database(runtime)

    # --- feed and market ------------------------------------------------------------

    def _feed(self, runtime: Runtime) -> Iterator[Metric]:
        tracker = runtime.services.feed_status
        status = tracker.snapshot()
        state = GaugeMetricFamily(
            "tickgraph_feed_state",
            "The upstream feed's state (1 for the current one)",
            labels=["source", "state"],
        )
        for candidate in FeedState:
            state.add_metric([status.source, candidate.value], candidate is status.state)
        yield state
        yield _counter(
            "tickgraph_feed_reconnects",
            "Upstream connections lost (and retried)",
            status.reconnects,
        )
        yield _counter("tickgraph_feed_events", "Market events ingested (applied)", status.events)
        yield _labelled(
            CounterMetricFamily(
                "tickgraph_feed_rejects",
                "Events refused by the decoder or screen",
                labels=["reason"],
            ),
            (((reason,), n) for reason, n in sorted(status.rejected.items())),
        )
        yield _gauge("tickgraph_feed_topics", "Upstream topics subscribed", len(status.topics))
        now = self._clock_ns()
        if status.last_event_ns is not None:
            yield _gauge(
                "tickgraph_feed_last_event_age_seconds",
                "Time since the last event was received",
                max(0, now - status.last_event_ns) / 1e9,
            )

    def _market(self, runtime: Runtime) -> Iterator[Metric]:
        services = runtime.services
        state = services.state
        now = self._clock_ns()
        # Per symbol of the configured universe only: on-demand symbols come and go,
        # and a label per symbol ever asked for would grow without bound.
        universe = services.settings.symbols
        age = GaugeMetricFamily(
            "tickgraph_symbol_last_update_age_seconds",
            "Time since the symbol's last quote or trade was applied (absent: none yet)",
            labels=["symbol"],
        )
        stale = GaugeMetricFamily(
            "tickgraph_symbol_stale",
            "1 when the symbol has had no event for longer than TICKGRAPH_STALE_AFTER",
            labels=["symbol"],
        )
        stale_after_ns = int(services.settings.stale_after_s * 1e9)
        for symbol in universe:
            st = state.get(symbol)
            is_stale = st is None or st.is_stale(now, stale_after_ns)
            stale.add_metric([symbol], is_stale)
            if st is not None and st.updated_ns:
                age.add_metric([symbol], max(0, now - st.updated_ns) / 1e9)
        yield age
        yield stale
        yield _counter(
            "tickgraph_market_reordered",
            "Events dropped because their sequence number went backwards",
            state.reordered,
        )
        bus = services.bus
        if bus is not None:
            published = getattr(bus, "published", None)
            if published is not None:
                yield _counter(
                    "tickgraph_bus_published", "Messages published on the bus", published
                )
            errors = getattr(bus, "handler_errors", None)
            if errors is not None:
                yield _counter("tickgraph_bus_handler_errors", "Bus handlers that raised", errors)

    # --- delivery -------------------------------------------------------------------

    def _delivery(self, runtime: Runtime) -> Iterator[Metric]:
        services = runtime.services
        mux = services.mux
        stats = mux.stats()
        yield _gauge("tickgraph_subscription_groups", "Live subscription groups", stats["groups"])
        yield _gauge(
            "tickgraph_subscription_members", "Subscriptions in those groups", stats["members"]
        )
        yield _labelled(
            CounterMetricFamily(
                "tickgraph_subscription_executions",
                "Subscription executions by how they ran (see server.delivery.execution)",
                labels=["kind"],
            ),
            (((kind,), n) for kind, n in sorted(mux.execution_stats().items())),
        )
        yield _labelled(
            GaugeMetricFamily(
                "tickgraph_symbol_subscribers",
                "Live subscriptions per symbol in this process",
                labels=["symbol"],
            ),
            (((symbol,), n) for symbol, n in sorted(mux.subscribers().items())),
        )
        yield _gauge(
            "tickgraph_hub_symbols", "Symbols with local subscribers", len(services.hub.interest())
        )
        totals = services.streams.totals()
        yield _gauge("tickgraph_streams_active", "Subscriber streams running", totals.active)
        yield _gauge("tickgraph_streams_queued", "Items waiting in subscriber lanes", totals.queued)
        yield _counter(
            "tickgraph_streams_conflated",
            "Items replaced by a newer one before they were sent",
            totals.conflated,
        )
        yield _counter(
            "tickgraph_streams_dropped",
            "Items dropped from a full lane (slow subscriber)",
            totals.dropped,
        )
        connections = services.connections
        if connections is not None:
            yield _gauge(
                "tickgraph_websocket_signed_in",
                "Open WebSockets of signed-in users",
                connections.count(),
            )

    # --- alerts ---------------------------------------------------------------------

    def _alerts(self, runtime: Runtime) -> Iterator[Metric]:
        analytics = runtime.services.analytics
        if analytics is not None:
            yield _gauge(
                "tickgraph_alerts_armed", "Alerts armed in the engine", len(analytics.engine)
            )
            yield _counter("tickgraph_alerts_fired", "Alert firings decided", analytics.fired)
            if analytics.rates is not None:
                yield _counter(
                    "tickgraph_alerts_suppressed",
                    "Firings suppressed by an alert's or a user's firing rate",
                    analytics.rates.suppressed,
                )
        delivery = runtime.services.delivery
        if delivery is None:
            return
        status = delivery.status()
        yield _gauge(
            "tickgraph_alert_firings_pending", "Firings waiting to be stored", status.pending
        )
        outcomes = CounterMetricFamily(
            "tickgraph_alert_firings", "Firings by what became of them", labels=["outcome"]
        )
        outcomes.add_metric(["decided"], status.decided)
        outcomes.add_metric(["written"], status.written)
        outcomes.add_metric(["duplicate"], status.duplicates)
        yield outcomes
        yield _counter(
            "tickgraph_alert_firing_write_failures",
            "Failed group commits of firings",
            status.failures,
        )
        yield from _lag(
            "tickgraph_alert_firing_durability_lag",
            "Decision to durable commit of recent firings",
            delivery.lag,
        )

    # --- orders ---------------------------------------------------------------------

    def _orders(self, runtime: Runtime) -> Iterator[Metric]:
        orders = runtime.services.orders
        if orders is None:
            return
        book = orders.book
        by_status: dict[str, int] = {}
        for record in book.open.values():
            key = record.state.status.value
            by_status[key] = by_status.get(key, 0) + 1
        yield _labelled(
            GaugeMetricFamily(
                "tickgraph_orders_open", "Open orders in this process's book", labels=["status"]
            ),
            (((status,), n) for status, n in sorted(by_status.items())),
        )
        yield _gauge("tickgraph_order_accounts", "Accounts loaded in the book", len(book.users))
        yield _counter("tickgraph_order_fills", "Fills folded into accounts", book.fills)
        yield _counter(
            "tickgraph_order_events_refused",
            "Broker events the order state table refused",
            book.refused,
        )
        ledger = orders.ledger
        yield _gauge(
            "tickgraph_order_ledger_pending", "Ledger entries not yet committed", ledger.pending
        )
        outcomes = CounterMetricFamily(
            "tickgraph_order_ledger_entries", "Ledger entries by outcome", labels=["outcome"]
        )
        outcomes.add_metric(["written"], ledger.written)
        outcomes.add_metric(["duplicate"], ledger.duplicates)
        yield outcomes
        yield _counter(
            "tickgraph_order_ledger_write_failures", "Failed ledger group commits", ledger.failures
        )
        yield from _lag(
            "tickgraph_order_ledger_lag", "Broker event to durable ledger commit", ledger.lag
        )

    # --- limits and the database ----------------------------------------------------

    def _denials(self) -> Metric:
        return _labelled(
            CounterMetricFamily(
                "tickgraph_rate_limited",
                "Calls refused by a rate or daily limit, by limit and tier",
                labels=["limit", "tier"],
            ),
            (((kind, tier or "unknown"), n) for (kind, tier), n in sorted(DENIALS.items())),
        )

    def _database(self, runtime: Runtime) -> Iterator[Metric]:
        pool = runtime.database.pool
        if pool is None:
            return
        size, idle = pool.get_size(), pool.get_idle_size()
        yield _gauge("tickgraph_db_pool_size", "Connections open in the pool", size)
        yield _gauge("tickgraph_db_pool_in_use", "Connections lent out", size - idle)
        yield _gauge("tickgraph_db_pool_max", "The pool's limit", pool.get_max_size())
