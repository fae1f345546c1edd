"""Families of the services around the market: alerts, orders and brokers, analyses,
limits and the database. Read at scrape time from the counters each keeps (see
``server.observability.metrics``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from server.limits.errors import DENIALS
from server.observability.families import by_key, counter, gauge, histogram, labelled, lag
from server.trading.states import EventKind

if TYPE_CHECKING:
    from server.analysis.service import AnalysisService
    from server.services.container import Services
    from server.storage.database import Database

#: Order events that are refusals; their reasons are counted apart.
REFUSALS = frozenset(
    {EventKind.REJECTED.value, EventKind.CANCEL_REJECTED.value, EventKind.REPLACE_REJECTED.value}
)


def service_families(services: Services, database: Database) -> Iterator[Metric]:
    yield from _alerts(services)
    yield from _orders(services)
    yield from _brokers(services)
    if services.analysis is not None:
        yield from _analysis(services.analysis)
    yield from _database(database)


def denials() -> Metric:
    """Every ``RateLimited`` raised, by limit and tier: counted when raised."""
    return labelled(
        CounterMetricFamily(
            "tickgraph_rate_limited",
            "Calls refused by a rate or daily limit, by limit and tier",
            labels=["limit", "tier"],
        ),
        (((kind, tier or "unknown"), n) for (kind, tier), n in sorted(DENIALS.items())),
    )


# --- alerts -------------------------------------------------------------------------


def _alerts(services: Services) -> Iterator[Metric]:
    analytics = services.analytics
    if analytics is not None:
        engine = analytics.engine
        yield gauge("tickgraph_alerts_armed", "Alerts armed in the engine", len(engine))
        yield counter(
            "tickgraph_alert_evaluations",
            "Events the alert engine evaluated (trades, quotes, indicator values, bar closes)",
            engine.evaluations,
        )
        yield counter(
            "tickgraph_alert_condition_checks",
            "Evaluations that moved a value onto or across a condition's threshold (the "
            "rest were settled by the index alone)",
            engine.conditions_examined,
        )
        yield counter("tickgraph_alerts_fired", "Alert firings decided", analytics.fired)
        if analytics.rates is not None:
            yield counter(
                "tickgraph_alerts_suppressed",
                "Firings suppressed by an alert's or a user's firing rate",
                analytics.rates.suppressed,
            )
    delivery = services.delivery
    if delivery is None:
        return
    status = delivery.status()
    yield gauge("tickgraph_alert_firings_pending", "Firings waiting to be stored", status.pending)
    outcomes = CounterMetricFamily(
        "tickgraph_alert_firings", "Firings by what became of them", labels=["outcome"]
    )
    outcomes.add_metric(["decided"], status.decided)
    outcomes.add_metric(["written"], status.written)
    outcomes.add_metric(["duplicate"], status.duplicates)
    yield outcomes
    yield counter(
        "tickgraph_alert_firing_write_failures", "Failed group commits of firings", status.failures
    )
    yield from lag(
        "tickgraph_alert_firing_durability_lag",
        "Decision to durable commit of recent firings",
        delivery.lag,
    )


# --- orders and brokers -----------------------------------------------------------


def _orders(services: Services) -> Iterator[Metric]:
    orders = services.orders
    if orders is None:
        return
    book = orders.book
    by_status: dict[str, int] = {}
    for record in book.open.values():
        key = record.state.status.value
        by_status[key] = by_status.get(key, 0) + 1
    yield by_key(
        GaugeMetricFamily(
            "tickgraph_orders_open", "Open orders in this process's book", labels=["status"]
        ),
        by_status,
    )
    yield gauge("tickgraph_order_accounts", "Accounts loaded in the book", len(book.users))
    yield counter("tickgraph_order_fills", "Fills folded into accounts", book.fills)
    events: dict[tuple[str, str], int] = {}
    refusals: dict[tuple[str, str, str], int] = {}
    for (broker, kind, reason), n in book.events.items():
        events[(broker, kind)] = events.get((broker, kind), 0) + n
        if kind in REFUSALS:
            refused = (broker, kind, reason or "unspecified")
            refusals[refused] = refusals.get(refused, 0) + n
    yield labelled(
        CounterMetricFamily(
            "tickgraph_order_events",
            "Broker events folded into orders, by broker and kind (a done order's last "
            "event says how it ended: fill, canceled, expired, rejected)",
            labels=["broker", "kind"],
        ),
        sorted(events.items()),
    )
    yield labelled(
        CounterMetricFamily(
            "tickgraph_order_rejections",
            "Orders, cancels and replaces the broker refused, by reason",
            labels=["broker", "kind", "reason"],
        ),
        sorted(refusals.items()),
    )
    yield counter(
        "tickgraph_order_events_refused",
        "Broker events the order state table refused",
        book.refused,
    )
    ledger = orders.ledger
    yield gauge(
        "tickgraph_order_ledger_pending", "Ledger entries not yet committed", ledger.pending
    )
    outcomes = CounterMetricFamily(
        "tickgraph_order_ledger_entries", "Ledger entries by outcome", labels=["outcome"]
    )
    outcomes.add_metric(["written"], ledger.written)
    outcomes.add_metric(["duplicate"], ledger.duplicates)
    yield outcomes
    yield counter(
        "tickgraph_order_ledger_write_failures", "Failed ledger group commits", ledger.failures
    )
    yield from lag(
        "tickgraph_order_ledger_lag", "Broker event to durable ledger commit", ledger.lag
    )


def _brokers(services: Services) -> Iterator[Metric]:
    accounts = services.broker_accounts
    if accounts is None:
        return
    stats = accounts.rest_stats
    yield labelled(
        CounterMetricFamily(
            "tickgraph_broker_requests",
            "Alpaca REST requests (every account of this process), by method and outcome "
            "(ok, refused, unauthorized, throttled, uncertain, not_sent, cancelled, error)",
            labels=["broker", "method", "outcome"],
        ),
        (
            (("alpaca", method, outcome), n)
            for (method, outcome), n in sorted(stats.attempts.items())
        ),
    )
    yield histogram(
        "tickgraph_broker_request_duration_seconds",
        "Alpaca REST request to its answer (or its failure)",
        stats.latency,
        broker="alpaca",
    )


# --- analyses -------------------------------------------------------------------------


def _analysis(service: AnalysisService) -> Iterator[Metric]:
    stats = service.stats
    yield by_key(
        CounterMetricFamily(
            "tickgraph_analysis_requests",
            "Analyses asked for, by admission (admitted, quota, concurrency, not_included)",
            labels=["outcome"],
        ),
        stats.requests,
    )
    yield labelled(
        CounterMetricFamily(
            "tickgraph_analysis_runs",
            "Analyses ended, by outcome (completed, cached, failed, cancelled) and error code",
            labels=["outcome", "code"],
        ),
        sorted(stats.finished.items()),
    )
    yield by_key(
        CounterMetricFamily(
            "tickgraph_analysis_tokens",
            "Model tokens used by analyses (cached answers use none), by kind",
            labels=["kind"],
        ),
        stats.tokens,
    )
    yield counter(
        "tickgraph_analysis_cost_usd",
        "Estimated cost of those tokens, in US dollars",
        float(stats.cost_usd),
    )
    yield histogram(
        "tickgraph_analysis_duration_seconds",
        "Admission to the end of an analysis (completed or failed)",
        stats.duration,
    )


# --- the database ---------------------------------------------------------------------


def _database(database: Database) -> Iterator[Metric]:
    pool = database.pool
    if pool is None:
        return
    size, idle = pool.get_size(), pool.get_idle_size()
    yield gauge("tickgraph_db_pool_size", "Connections open in the pool", size)
    yield gauge("tickgraph_db_pool_in_use", "Connections lent out", size - idle)
    yield gauge("tickgraph_db_pool_max", "The pool's limit", pool.get_max_size())
    queries = database.queries
    yield histogram(
        "tickgraph_db_query_duration_seconds",
        "Statements run through the pool, from the call to the answer",
        queries.latency,
    )
    yield counter(
        "tickgraph_db_query_errors", "Statements PostgreSQL answered with an error", queries.errors
    )
