"""The composition root: builds and wires every part at start-up, stops them at shutdown.

The embedded default picks the local adapter of each port (embedded PostgreSQL,
in-process bus, simulated market); settings switch each to the real service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from redis.asyncio import BlockingConnectionPool, Redis

from server.alerts import AlertEngine
from server.analytics import Analytics
from server.auth.access import AccessControl
from server.auth.passwords import PasswordHashing
from server.auth.tokens import load_keyring
from server.auth.users import AuthSettings, UserService
from server.delivery.bus import InProcessBus
from server.delivery.firings import AlertDelivery
from server.delivery.hub import MarketHub
from server.history.polygon import PolygonHistory
from server.history.provider import ChainedHistory, HistoryProvider
from server.history.simulated import SimulatedHistory
from server.history.stored import StoredHistory
from server.ingest import Ingest
from server.limits.limiter import FailMode, InProcessLimiter, Limiter, RedisLimiter
from server.limits.login_throttle import LoginThrottle
from server.market.directory import SymbolDirectory, SymbolInfo
from server.market.state import MarketState
from server.services.alerts import AlertService, output_index
from server.services.container import Services
from server.settings import MarketSource, Settings
from server.storage.bars import BarWriter
from server.storage.database import Database
from server.storage.symbols import SymbolRow, ensure_symbols, load_symbols
from streams.backoff import Backoff
from streams.feed_status import FeedStatusTracker
from streams.polygon_feed import PolygonFeed
from streams.polygon_protocol import topics_for
from streams.polygon_server import PolygonProtocolServer, start_simulated_server

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    services: Services
    database: Database
    feed: PolygonFeed
    feed_task: asyncio.Task[None]
    simulator: PolygonProtocolServer | None = None
    bar_writer: BarWriter | None = None
    delivery: AlertDelivery | None = None
    background: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def start(cls, settings: Settings) -> Runtime:
        database = await Database.open(settings)
        try:
            return await cls._start_with(settings, database)
        except BaseException:
            await database.close()
            raise

    @classmethod
    async def _start_with(cls, settings: Settings, database: Database) -> Runtime:
        source = "simulated" if settings.market_source is MarketSource.SIMULATED else "polygon"
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
        directory = SymbolDirectory(settings.symbols, reference)

        simulator: PolygonProtocolServer | None = None
        if settings.market_source is MarketSource.SIMULATED:
            simulator = await start_simulated_server(
                list(settings.symbols), settings.simulated_seed, settings.simulated_rate
            )
            feed_host, secure, api_key = f"127.0.0.1:{simulator.port}", False, "simulated"
        else:
            endpoint = settings.polygon_endpoint
            assert settings.polygon_api_key is not None
            feed_host, secure = endpoint.feed, endpoint.secure
            api_key = settings.polygon_api_key.reveal()
        url = f"{'wss' if secure else 'ws'}://{feed_host}/stocks"

        state = MarketState(settings.trades_kept)
        bus = InProcessBus()
        hub = MarketHub(bus)
        tracker = FeedStatusTracker(source, url)
        bar_writer = BarWriter(database.pool)
        delivery = AlertDelivery(database.pool, bus)
        analytics = Analytics(
            bus=bus,
            history=_history(settings, database),
            writer=bar_writer,
            # Per-user limits depend on the tier: the service and the database check them.
            engine=AlertEngine(outputs=output_index),
            delivery=delivery,
        )
        alerts = AlertService(database.pool, analytics)
        users = UserService(
            database.pool,
            PasswordHashing(),
            load_keyring(settings.jwt_private_keys, settings.data_dir),
            AuthSettings.from_settings(settings),
        )
        limiter = _limiter(settings)
        access = AccessControl(users, limiter, allow_anonymous=settings.allow_anonymous)
        ingest = Ingest(state, bus, tracker, on_applied=analytics.on_event)
        universe_topics = [t for s in settings.symbols for t in topics_for(s)]

        def on_session() -> None:
            # A new upstream connection: sequence numbers restart, and the time since
            # our last event is a gap to backfill.
            ingest.new_session()
            analytics.new_session()

        feed = PolygonFeed(
            api_key=api_key,
            feed=feed_host,
            secure=secure,
            on_frame=ingest.on_frame,
            status=tracker,
            backoff=Backoff(settings.feed_backoff_initial_s, settings.feed_backoff_max_s),
            topics=universe_topics,
            on_session=on_session,
        )
        ingest.on_notice = feed.handle_status
        universe = frozenset(settings.symbols)

        def on_interest(symbol: str, wanted: bool) -> None:
            # The universe is always subscribed upstream; other symbols only while wanted.
            if symbol in universe:
                return
            (feed.want if wanted else feed.unwant)(topics_for(symbol))

        hub.on_interest = on_interest
        bar_writer.start()
        delivery.start()
        armed = await alerts.start()
        feed_task = asyncio.create_task(feed.run(), name="polygon-feed")
        background = [
            asyncio.create_task(analytics.run_clock(), name="bar-clock"),
            asyncio.create_task(alerts.run_expiry(), name="alert-expiry"),
        ]
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
        )
        # Subscriber-only indicators follow the forming bar once per delivery flush,
        # and delivery gives way to the feed whenever the feed is behind.
        analytics.settle_with(services.mux.flusher.prepare)
        services.mux.flusher.behind = feed.behind
        log.info(
            "tickgraph started (%d alerts armed)", armed, extra={"config": settings.describe()}
        )
        return cls(services, database, feed, feed_task, simulator, bar_writer, delivery, background)

    async def stop(self) -> None:
        await self.feed.stop()
        for task in [self.feed_task, *self.background]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.simulator is not None:
            await self.simulator.close()
        # What the feed produced last is written before the database goes away.
        if self.delivery is not None:
            await self.delivery.close()
        if self.bar_writer is not None:
            await self.bar_writer.close()
        await self.database.close()


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


def _history(settings: Settings, database: Database) -> HistoryProvider:
    """Where indicator warm-up bars come from: our own stored bars first, then Polygon
    REST (with a real key) or the simulated market's own history."""
    stored = StoredHistory(database.pool)
    if settings.market_source is MarketSource.SIMULATED:
        return ChainedHistory(stored, SimulatedHistory(settings.simulated_seed))
    if settings.polygon_rest_url and settings.polygon_api_key is not None:
        remote = PolygonHistory(settings.polygon_api_key, base_url=settings.polygon_rest_url)
        return ChainedHistory(stored, remote)
    return stored
