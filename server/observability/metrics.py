"""The server's figures as Prometheus metric families, read when Prometheus scrapes.

Why a collector and not client-library counters: the hot path (decode → state → bus →
bars → alerts → delivery) already keeps plain integer counters where it needs them
(``FeedStatusTracker.events``, ``Lane.conflated``, ``OrderLedger.written``...).
Incrementing a ``prometheus_client.Counter`` per tick as well would take a lock and a
label lookup per event; reading the integers we already have once per scrape costs the
hot path nothing. Where a figure was missing, its owner keeps a plain integer (or a
``LatencyHistogram``), counted per frame, per flush or per request rather than per
event wherever the event's path allows. Every value here is read on the event loop (the
scrape handler is async and never yields while collecting), so no dict is read while it
is being changed.

Counters are monotonic over the process's life; gauges are "now". This module has the
market side (feed, market state, bus, delivery); ``service_metrics`` the rest (alerts,
orders, brokers, analyses, limits, the database). The families and their labels are
listed in docs/operations.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from server.observability.bus_metrics import bus_families
from server.observability.families import by_key, counter, gauge, histogram, labelled
from server.observability.service_metrics import denials, service_families
from streams.feed_status import FeedState

if TYPE_CHECKING:
    from server.runtime import Runtime

#: Reads the running server, None while it starts or stops.
RuntimeRef = Callable[[], "Runtime | None"]

#: The label that sums the live subscriptions of symbols outside the configured
#: universe (on-demand symbols), so the family's size stays bounded.
OTHER_SYMBOLS = "_other"


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
        yield gauge("tickgraph_up", "1 while the server runs and serves", runtime is not None)
        yield denials()
        if runtime is None:
            return
        yield from self._feed(runtime)
        yield from self._market(runtime)
        yield from self._delivery(runtime)
        yield from service_families(runtime.services, runtime.database)

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
        yield counter(
            "tickgraph_feed_reconnects",
            "Upstream connections lost (and retried)",
            status.reconnects,
        )
        trades, quotes = tracker.trades, tracker.quotes
        yield by_key(
            CounterMetricFamily(
                "tickgraph_feed_events",
                "Market events ingested (applied), by kind",
                labels=["kind"],
            ),
            {"trade": trades, "quote": quotes, "aggregate": status.events - trades - quotes},
        )
        yield labelled(
            CounterMetricFamily(
                "tickgraph_feed_rejects",
                "Events refused by the decoder or screen",
                labels=["reason"],
            ),
            (((reason,), n) for reason, n in sorted(status.rejected.items())),
        )
        yield gauge("tickgraph_feed_topics", "Upstream topics subscribed", len(status.topics))
        now = self._clock_ns()
        if status.last_event_ns is not None:
            yield gauge(
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
        yield counter(
            "tickgraph_market_reordered",
            "Events dropped because their sequence number went backwards",
            state.reordered,
        )
        if services.bus is not None:
            yield from bus_families(services.bus)
        node = services.node
        if node is not None:
            # Several processes: exactly one should say 1 (alert on the sum != 1).
            yield gauge(
                "tickgraph_leader", "1 while this process leads the deployment", node.serving
            )
            yield gauge(
                "tickgraph_leader_fence",
                "This process's fencing token while it leads",
                node.election.fence,
            )

    # --- delivery -------------------------------------------------------------------

    def _delivery(self, runtime: Runtime) -> Iterator[Metric]:
        services = runtime.services
        mux = services.mux
        stats = mux.stats()
        yield gauge("tickgraph_subscription_groups", "Live subscription groups", stats["groups"])
        yield gauge(
            "tickgraph_subscription_members", "Subscriptions in those groups", stats["members"]
        )
        yield labelled(
            CounterMetricFamily(
                "tickgraph_subscription_executions",
                "Subscription executions by how they ran (see server.delivery.execution)",
                labels=["kind"],
            ),
            (((kind,), n) for kind, n in sorted(mux.execution_stats().items())),
        )
        yield by_key(
            GaugeMetricFamily(
                "tickgraph_symbol_subscribers",
                "Live subscriptions per symbol of the configured universe in this process "
                f"(the other symbols' together: {OTHER_SYMBOLS})",
                labels=["symbol"],
            ),
            _bounded(mux.subscribers(), services.settings.symbols),
        )
        yield gauge(
            "tickgraph_hub_symbols", "Symbols with local subscribers", len(services.hub.interest())
        )
        totals = services.streams.totals()
        yield gauge("tickgraph_streams_active", "Subscriber streams running", totals.active)
        yield gauge("tickgraph_streams_queued", "Items waiting in subscriber lanes", totals.queued)
        yield counter(
            "tickgraph_streams_conflated",
            "Items replaced by a newer one before they were sent",
            totals.conflated,
        )
        yield counter(
            "tickgraph_streams_dropped",
            "Items dropped from a full lane (slow subscriber)",
            totals.dropped,
        )
        sockets = services.sockets
        yield gauge(
            "tickgraph_websocket_connections",
            "Open WebSockets, anonymous and not yet initialised ones included",
            sockets.open,
        )
        yield counter(
            "tickgraph_websocket_connections_opened",
            "WebSockets accepted over the process's life",
            sockets.opened,
        )
        connections = services.connections
        if connections is not None:
            yield gauge(
                "tickgraph_websocket_signed_in",
                "Open WebSockets of signed-in users",
                connections.count(),
            )
        flusher = mux.flusher
        yield counter(
            "tickgraph_delivery_messages",
            "Messages written to WebSockets (subscription data and protocol messages)",
            flusher.messages,
        )
        yield counter(
            "tickgraph_delivery_writes",
            "Socket writes those messages took (one per connection per flush)",
            flusher.writes,
        )
        yield histogram(
            "tickgraph_delivery_latency_seconds",
            "Upstream receive time to socket write of market data: one sample per flush "
            "that wrote some, the age of its oldest item",
            flusher.latency,
        )


def _bounded(counts: dict[str, int], universe: tuple[str, ...]) -> dict[str, int]:
    """The universe's symbols by name, every other symbol summed under one label."""
    known = set(universe)
    out: dict[str, int] = {}
    other = 0
    for symbol, n in counts.items():
        if symbol in known:
            out[symbol] = n
        else:
            other += n
    if other:
        out[OTHER_SYMBOLS] = other
    return out
