"""The composition root: builds and wires every part at start-up, stops them at shutdown.

The embedded default picks the local adapter of each port (embedded PostgreSQL,
in-process bus, simulated market); settings switch each to the real service.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from redis.asyncio import BlockingConnectionPool, Redis

from brokers.paper import Commission, PaperBroker, PaperConfig
from server.alerts import AlertEngine
from server.analysis.service import AnalysisService
from server.analysis.setup import build_analysis, close_analysis
from server.analytics import Analytics, firing_of
from server.auth.access import AccessControl
from server.auth.passwords import PasswordHashing
from server.auth.standing import AccountStanding, StandingListener
from server.auth.tokens import load_keyring
from server.auth.users import AuthSettings, UserService
from server.delivery.bus import Bus, InProcessBus
from server.delivery.firings import AlertDelivery
from server.delivery.hub import MarketHub
from server.delivery.leadership import process_id
from server.delivery.redis_bus import RedisBus
from server.history.polygon import PolygonHistory
from server.history.provider import ChainedHistory, HistoryProvider
from server.history.simulated import SimulatedHistory
from server.history.stored import StoredHistory
from server.housekeeping import JOBS, Housekeeping, JobContext
from server.ingest import Ingest
from server.limits.firing_rates import FiringRates
from server.limits.limiter import FailMode, InProcessLimiter, Limiter, RedisLimiter
from server.limits.login_throttle import LoginThrottle
from server.limits.shared_quota import SharedQuota
from server.limits.usage import SubscriptionQuota
from server.market.bars import BarBook
from server.market.directory import SymbolDirectory, SymbolInfo
from server.market.state import MarketState
from server.market.timeframes import Timeframe
from server.scaleout.event_stream import StreamingBus, StreamWriter
from server.scaleout.node import Node
from server.scaleout.setup import Parts, join, redis_bus
from server.services.alert_recovery import AlertRecovery
from server.services.alerts import AlertService, output_index
from server.services.broker_accounts import BrokerAccounts
from server.services.container import Services
from server.services.orders.alert_orders import AlertOrders
from server.services.orders.book import OrderBook
from server.services.orders.brokers_setup import broker_accounts, router_for
from server.services.orders.ledger import OrderLedger
from server.services.orders.market import MarketAccess
from server.services.orders.paper import PaperFeed, feed_now_ms
from server.services.orders.requests import TradingConfig
from server.services.orders.restore import restore as restore_trading
from server.services.orders.service import OrderService
from server.settings import MarketSource, Settings
from server.storage.bars import STORED_TIMEFRAMES, BarWriter, load_session
from server.storage.database import Database
from server.storage.symbols import SymbolRow, ensure_symbols, load_symbols
from server.tasks import cancel_all
from server.trading.calendar import CONTINUOUS, NYSE
from server.trading.risk import RiskConfig
from server.websocket.connections import Connections
from streams.backoff import Backoff
from streams.events import Received
from streams.feed_status import FeedStatusTracker
from streams.polygon_feed import PolygonFeed
from streams.polygon_protocol import topics_for
from streams.polygon_server import PolygonProtocolServer, start_simulated_server
from streams.screening import FeedScreen, ScreenPolicy

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    services: Services
    database: Database
    feed: PolygonFeed
    simulator: PolygonProtocolServer | None = None
    #: Set once this process runs the core (at once, or when elected).
    feed_task: asyncio.Task[None] | None = None
    bar_writer: BarWriter | None = None
    delivery: AlertDelivery | None = None
    background: list[asyncio.Task[None]] = field(default_factory=list)
    #: How to stop what ``start`` started, last started first.
    stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    @classmethod
    async def start(cls, settings: Settings) -> Runtime:
        """Start every part; if one fails, what had started is stopped again (the
        database included) before the error propagates, so nothing is left running."""
        async with contextlib.AsyncExitStack() as stack:
            database = await Database.open(settings)
            stack.push_async_callback(database.close)
            runtime = await cls._start_with(settings, database, stack)
            runtime.stack = stack.pop_all()
            return runtime
        raise AssertionError("unreachable")  # pragma: no cover - the stack re-raises

    @classmethod
    async def _start_with(
        cls, settings: Settings, database: Database, stack: contextlib.AsyncExitStack
    ) -> Runtime:
        source = "simulated" if settings.market_source is MarketSource.SIMULATED else "polygon"
        directory = await _directory(settings, database, source)

        simulator: PolygonProtocolServer | None = None
        if settings.market_source is MarketSource.SIMULATED:
            simulator = await start_simulated_server(
                list(settings.symbols), settings.simulated_seed, settings.simulated_rate
            )
            stack.push_async_callback(simulator.close)
            feed_host, secure, api_key = f"127.0.0.1:{simulator.port}", False, "simulated"
        else:
            endpoint = settings.polygon_endpoint
            assert settings.polygon_api_key is not None
            feed_host, secure = endpoint.feed, endpoint.secure
            api_key = settings.polygon_api_key.reveal()
        url = f"{'wss' if secure else 'ws'}://{feed_host}/stocks"

        state = MarketState(settings.trades_kept)
        bus = _bus(settings, stack)
        hub = MarketHub(bus)
        tracker = FeedStatusTracker(source, url)
        history, rest = _history(settings, database)
        # What must reach every process's subscribers once committed (order updates,
        # fired alerts) is also announced on the deployment's event stream.
        events = StreamWriter(_redis(settings)) if isinstance(bus, RedisBus) else None
        committed: Bus = bus if events is None else StreamingBus(bus, events)
        bar_writer, delivery, screen, analytics, alerts = _analytics(
            settings, database, bus, history, committed=committed
        )
        limiter = _limiter(settings)
        users, access, connections, listener = _identity(settings, database, limiter)
        trading = _trading(
            settings,
            database,
            committed,
            state=state,
            directory=directory,
            limiter=limiter,
            screen=screen,
        )
        ingest = Ingest(
            state,
            bus,
            tracker,
            on_applied=_each(analytics.on_event, trading.feed.on_event),
            screen=screen,
        )
        feed = _feed(
            settings,
            ingest,
            analytics=analytics,
            tracker=tracker,
            hub=hub,
            upstream=(feed_host, secure, api_key),
        )
        alerts.trades = delivery.trades = AlertOrders(trading.service, alerts.limits_for)
        runtime = cls(services=None, database=database, feed=feed, simulator=simulator)  # type: ignore[arg-type]
        nodes: list[Node] = []
        # After the core has stopped and drained: only then may another process take
        # the lease and rebuild from what this one wrote.
        stack.push_async_callback(_hand_over, nodes)
        # The stateful core (feed, writers, restored sessions, trading, armed alerts)
        # runs in one process of a deployment: here at once, or once elected.
        core = contextlib.AsyncExitStack()
        stack.push_async_callback(core.aclose)

        start_core = functools.partial(
            _start_core,
            core,
            runtime,
            settings=settings,
            database=database,
            writers=(bar_writer, delivery),
            analytics=analytics,
            screen=screen,
            trading=trading,
            alerts=alerts,
        )

        _start_every_process(
            stack, runtime, listener, access, _housekeeping(settings, database, users)
        )
        node = None
        if not isinstance(bus, RedisBus) or events is None:
            await start_core()
        else:
            parts = Parts(
                _redis(settings),
                bus,
                state,
                tracker,
                database,
                events,
                trading.ledger.recent,
                start_core,
                feed,
                hub,
            )
            nodes.append(node := await join(settings, stack, parts))
        # Serve once revocations are heard (bounded: without the listener every check
        # reads the database, which is correct, only slower).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(listener.ready.wait(), 5.0)
        services = Services(
            settings=settings,
            state=state,
            hub=hub,
            directory=directory,
            feed_status=tracker,
            database=database,
            bus=bus,
            analytics=analytics,
            alerts=alerts,
            users=users,
            access=access,
            login_throttle=LoginThrottle(_login_limiter(settings, limiter)),
            connections=connections,
            delivery=delivery,
            orders=trading.service,
            analysis=_analysis(
                stack,
                settings,
                database,
                state=state,
                book=analytics.book,
                history=history,
                rest=rest,
                orders=trading.service,
                resolve_symbol=directory.resolve,
            ),
            broker_accounts=trading.accounts,
            node=node,
        )
        # Subscriber-only indicators follow the forming bar once per delivery flush,
        # and delivery gives way to the feed whenever the feed is behind.
        analytics.settle_with(services.mux.flusher.prepare)
        services.mux.flusher.behind = feed.behind
        runtime.services = services
        log.info("tickgraph started", extra={"config": settings.describe()})
        return runtime

    def serving(self) -> None:
        """The server listens: with REDIS_URL, this process now campaigns to lead."""
        node = self.services.node
        if node is not None:
            node.start()

    async def stop(self) -> None:
        """Stop the feed, then the tasks, writers, simulator and database."""
        await self.stack.aclose()


def _start_every_process(
    stack: contextlib.AsyncExitStack,
    runtime: Runtime,
    listener: StandingListener,
    access: AccessControl,
    housekeeping: list[asyncio.Task[None]],
) -> None:
    """What runs in every process, leader or not: revocations heard, quotas shared,
    housekeeping (each round runs in one process of the deployment, whichever takes
    its lock: a job keeps its schedule whichever processes are alive)."""
    tasks = [asyncio.create_task(listener.run(), name="auth-listener"), *housekeeping]
    if access.shared is not None:
        tasks.append(asyncio.create_task(access.shared.run(), name="quota-sync"))
    runtime.background.extend(tasks)
    stack.push_async_callback(cancel_all, tasks)


async def _hand_over(nodes: list[Node]) -> None:
    for node in nodes:
        await node.stop()


def _feed(
    settings: Settings,
    ingest: Ingest,
    *,
    analytics: Analytics,
    tracker: FeedStatusTracker,
    hub: MarketHub,
    upstream: tuple[str, bool, str],
) -> PolygonFeed:
    """The upstream feed: the universe always, other symbols while someone wants them."""
    feed_host, secure, api_key = upstream

    def on_session() -> None:
        # A new upstream connection: the time since our last event is a gap to
        # backfill (read from the feed clock before it starts over), sequence
        # numbers and the feed clock restart.
        analytics.new_session()
        ingest.new_session()

    feed = PolygonFeed(
        api_key=api_key,
        feed=feed_host,
        secure=secure,
        on_frame=ingest.on_frame,
        status=tracker,
        backoff=Backoff(settings.feed_backoff_initial_s, settings.feed_backoff_max_s),
        topics=[t for s in settings.symbols for t in topics_for(s)],
        on_session=on_session,
    )
    ingest.on_notice = feed.handle_status
    universe = frozenset(settings.symbols)

    def on_interest(symbol: str, wanted: bool) -> None:
        if symbol in universe:
            return
        (feed.want if wanted else feed.unwant)(topics_for(symbol))

    hub.on_interest = on_interest
    return feed


async def _start_core(
    core: contextlib.AsyncExitStack,
    runtime: Runtime,
    *,
    settings: Settings,
    database: Database,
    writers: tuple[BarWriter, AlertDelivery],
    analytics: Analytics,
    screen: FeedScreen,
    trading: _Trading,
    alerts: AlertService,
) -> None:
    """Start the stateful core on ``core``: the writers, the sessions and the trading
    book rebuilt from the database, the armed alerts, then the feed and the clocks."""
    bar_writer, delivery = writers
    _start_writers(core, bar_writer, delivery, settings.drain_stall_timeout_s)
    await _restore_sessions(settings, database, analytics, screen)
    await _start_trading(core, trading, database, settings)
    armed = await alerts.start()
    feed = runtime.feed
    runtime.feed_task = asyncio.create_task(feed.run(), name="polygon-feed")
    tasks = [
        asyncio.create_task(analytics.run_clock(), name="bar-clock"),
        asyncio.create_task(alerts.run_expiry(), name="alert-expiry"),
        asyncio.create_task(trading.feed.run_clock(), name="paper-clock"),
    ]
    runtime.background.extend(tasks)
    core.push_async_callback(cancel_all, tasks)
    core.push_async_callback(cancel_all, [runtime.feed_task])
    core.push_async_callback(feed.stop)
    runtime.bar_writer, runtime.delivery = bar_writer, delivery
    log.info("market and trading core started (%d alerts armed)", armed)


def _bus(settings: Settings, stack: contextlib.AsyncExitStack) -> Bus:
    """In this process alone, or shared through Redis by several (``server.scaleout``)."""
    return redis_bus(settings, stack) if settings.redis_url is not None else InProcessBus()


def _analytics(
    settings: Settings,
    database: Database,
    bus: Bus,
    history: HistoryProvider,
    *,
    committed: Bus,
) -> tuple[BarWriter, AlertDelivery, FeedScreen, Analytics, AlertService]:
    """Bars, indicators and alerts after the screen, with their writers (fired alerts
    published on ``committed``)."""
    bar_writer = _bar_writer(settings, database)
    delivery = AlertDelivery(database.pool, committed)
    screen = FeedScreen(screen_policy(settings))
    rates = FiringRates()
    analytics = Analytics(
        bus=bus,
        history=history,
        writer=bar_writer,
        # Per-user limits depend on the tier: the service and the database check them.
        engine=AlertEngine(outputs=output_index),
        delivery=delivery,
        clock=screen.clock,
        rates=rates,
    )
    delivery.take_evaluated = analytics.take_evaluated
    recovery = AlertRecovery(history, delivery, output_index, firing_of)
    alerts = AlertService(database.pool, analytics, recovery=recovery)
    rates.limits_for = alerts.limits_for
    return bar_writer, delivery, screen, analytics, alerts


@dataclass(frozen=True, slots=True)
class _Trading:
    service: OrderService
    ledger: OrderLedger
    feed: PaperFeed
    accounts: BrokerAccounts


def _trading(
    settings: Settings,
    database: Database,
    bus: Bus,
    *,
    state: MarketState,
    directory: SymbolDirectory,
    limiter: Limiter,
    screen: FeedScreen,
) -> _Trading:
    """The order service over the paper broker (its calendar: round the clock for the
    simulated market, New York's sessions for Polygon's feed, live or replayed)."""
    choice = settings.trading_calendar
    if choice is None:
        choice = "continuous" if settings.market_source is MarketSource.SIMULATED else "nyse"
    calendar = CONTINUOUS if choice == "continuous" else NYSE
    broker = PaperBroker(
        config=PaperConfig(
            commission=Commission(per_share=settings.paper_commission_per_share),
            slippage_bps=settings.paper_slippage_bps,
            calendar=calendar,
        )
    )
    now_ms = feed_now_ms(screen.clock, live=settings.source_is_live)
    ledger = OrderLedger(database.pool, bus)
    book = OrderBook(settings.paper_starting_cash)
    router = router_for(book, broker)
    service = OrderService(
        database.pool,
        book=book,
        ledger=ledger,
        broker=router,
        market=MarketAccess(state, directory),
        limiter=limiter,
        config=TradingConfig(
            starting_cash=settings.paper_starting_cash,
            risk=RiskConfig(price_band_percent=settings.order_price_band_percent),
            calendar=calendar,
            live=settings.source_is_live,
        ),
        now_ms=now_ms,
    )
    accounts = broker_accounts(settings, database.pool, router, service)
    return _Trading(service, ledger, PaperFeed(broker, now_ms), accounts)


async def _start_trading(
    stack: contextlib.AsyncExitStack, trading: _Trading, database: Database, settings: Settings
) -> None:
    """Start the ledger writer (it stops after the feed: pushed first, popped last, so
    the fills the feed caused last are written) and rebuild the book from the ledger."""
    trading.ledger.start()
    stack.push_async_callback(trading.ledger.close, settings.drain_stall_timeout_s)
    # Brokers stop before the ledger (popped first): their last events are written.
    stack.push_async_callback(trading.accounts.close)
    await trading.accounts.start()
    await restore_trading(database.pool, trading.service)
    trading.accounts.start_streams()


def _analysis(
    stack: contextlib.AsyncExitStack,
    settings: Settings,
    database: Database,
    *,
    state: MarketState,
    book: BarBook,
    history: HistoryProvider,
    rest: PolygonHistory | None,
    orders: OrderService,
    resolve_symbol: Callable[[str], str],
) -> AnalysisService:
    """The analysis service; stopped before the feed and the database, so background
    analyses are cancelled (not charged) and their rows written while the pool is open."""
    analysis = build_analysis(
        settings,
        pool=database.pool,
        state=state,
        book=book,
        history=history,
        rest=rest,
        orders=orders,
        resolve_symbol=resolve_symbol,
    )
    stack.push_async_callback(close_analysis, analysis)
    return analysis


def _each(*handlers: Callable[[Received], None]) -> Callable[[Received], None]:
    """One ingest callback calling each handler in turn (the analytics, then the paper
    broker: a fill sees the bar its tick made)."""
    first, second = handlers

    def both(item: Received) -> None:
        first(item)
        second(item)

    return both


def _start_writers(
    stack: contextlib.AsyncExitStack,
    bar_writer: BarWriter,
    delivery: AlertDelivery,
    drain_stall_timeout_s: float,
) -> None:
    """Start the writers; they stop after the feed (pushed first, popped last), so what
    the feed produced last is written before the database goes away: every firing is
    drained unless the database stops making progress for ``drain_stall_timeout_s``."""
    bar_writer.start()
    stack.push_async_callback(bar_writer.close)
    delivery.start()
    stack.push_async_callback(delivery.close, drain_stall_timeout_s)


async def _restore_sessions(
    settings: Settings, database: Database, analytics: Analytics, screen: FeedScreen
) -> None:
    """Rebuild each universe symbol's session that was running when the server stopped
    (its day and forming bars, from the stored 1s and 1m bars); what came after the last
    stored bar is backfilled or announced when the feed is back (``bar_recovery``)."""
    for symbol in settings.symbols:
        bars = await load_session(database.pool, symbol)
        if not bars:
            continue
        analytics.restore_session(symbol, bars)
        last = max(bars, key=lambda b: (b.end_ms, b.timeframe is Timeframe.S1))
        screen.seed_reference(symbol, last.close)
        log.info("restored %s's session from %d stored bars", symbol, len(bars))


async def _directory(settings: Settings, database: Database, source: str) -> SymbolDirectory:
    # Only add what is missing: names/exchanges from a reference load must survive.
    await ensure_symbols(
        database.pool,
        [
            SymbolRow(symbol=s, source="simulated" if source == "simulated" else "config")
            for s in settings.symbols
        ],
    )
    reference = [
        SymbolInfo(r.symbol, r.name, r.exchange)
        for r in await load_symbols(database.pool)
        if r.active
    ]
    return SymbolDirectory(settings.symbols, reference, on_demand=settings.streams_on_demand)


def _bar_writer(settings: Settings, database: Database) -> BarWriter:
    stored = STORED_TIMEFRAMES
    if not settings.second_bars_days:
        stored = stored - {Timeframe.S1}
    return BarWriter(database.pool, timeframes=stored)


def _housekeeping(
    settings: Settings, database: Database, users: UserService
) -> list[asyncio.Task[None]]:
    """Purges and rotations on a schedule, each round in one process of the deployment."""
    if not settings.housekeeping:
        return []
    ctx = JobContext(settings, database.pool, users.tokens.keyring)
    return Housekeeping(ctx, JOBS).start()


def screen_policy(settings: Settings) -> ScreenPolicy:
    """The market-data screening tolerances of ``settings`` (docs/market-data.md)."""
    return ScreenPolicy(
        live=settings.source_is_live,
        live_ahead_ms=round(settings.live_clock_tolerance_s * 1000),
        ahead_ms=round(settings.replay_clock_tolerance_s * 1000),
        late_ms=round(settings.late_tolerance_s * 1000),
        band=settings.price_band_percent / 100.0,
    )


def _identity(
    settings: Settings, database: Database, limiter: Limiter
) -> tuple[UserService, AccessControl, Connections, StandingListener]:
    """Accounts, callers, and how a change to someone's access reaches their open
    sockets: on this process at once, on every process through the database."""
    auth_settings = AuthSettings.from_settings(settings)
    standing = AccountStanding(
        database.pool, session_memory_s=auth_settings.access_token_ttl.total_seconds()
    )
    users = UserService(
        database.pool,
        PasswordHashing(),
        load_keyring(settings.jwt_private_keys, settings.data_dir),
        auth_settings,
        standing,
    )
    shared = None
    if settings.redis_url is not None:
        # Tier quotas counted over every process of the deployment.
        shared = SharedQuota(SubscriptionQuota(), _redis(settings), process_id())
    access = AccessControl(users, limiter, allow_anonymous=settings.allow_anonymous, shared=shared)
    connections = Connections(access.recheck)
    users.on_change = connections.on_change
    listener = StandingListener(
        database.connect, standing, connections.on_change, connections.recheck_all
    )
    return users, access, connections, listener


def _redis(settings: Settings) -> Redis:
    assert settings.redis_url is not None
    # A bounded pool: a burst must queue for connections, not open hundreds of them.
    pool = BlockingConnectionPool.from_url(
        settings.redis_url.reveal(), max_connections=32, timeout=1.0
    )
    return Redis(connection_pool=pool)


def _limiter(settings: Settings) -> Limiter:
    """Shared limits in Redis when several processes serve, else in this process. If
    Redis stops answering, request limits fall back to this process's view."""
    if settings.redis_url is None:
        return InProcessLimiter()
    return RedisLimiter(_redis(settings), fail_mode=FailMode.LOCAL)


def _login_limiter(settings: Settings, shared: Limiter) -> Limiter:
    """Login throttling fails closed: an outage must not open a password-guessing
    window."""
    if settings.redis_url is None:
        return shared
    return RedisLimiter(_redis(settings), fail_mode=FailMode.CLOSED)


def _history(
    settings: Settings, database: Database
) -> tuple[HistoryProvider, PolygonHistory | None]:
    """Where indicator warm-up bars come from: our own stored bars first, then Polygon
    REST (with a real key) or the simulated market's own history. The Polygon REST
    client too, when there is one (analyses read headlines through it)."""
    stored = StoredHistory(database.pool)
    if settings.market_source is MarketSource.SIMULATED:
        return ChainedHistory(stored, SimulatedHistory(settings.simulated_seed)), None
    if settings.polygon_rest_url and settings.polygon_api_key is not None:
        remote = PolygonHistory(settings.polygon_api_key, base_url=settings.polygon_rest_url)
        return ChainedHistory(stored, remote), remote
    return stored, None
