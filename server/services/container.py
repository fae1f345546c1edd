"""Everything a request or a subscription needs, built once at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from server.delivery.hub import MarketHub
from server.delivery.multiplex import Multiplexer
from server.delivery.registry import SocketCounts, StreamRegistry
from server.market.directory import SymbolDirectory
from server.market.state import MarketState
from server.settings import Settings
from streams.feed_status import FeedStatusTracker

if TYPE_CHECKING:
    from server.analysis.service import AnalysisService
    from server.analytics import Analytics
    from server.auth.access import AccessControl
    from server.auth.users import UserService
    from server.delivery.bus import Bus
    from server.delivery.firings import AlertDelivery
    from server.limits.login_throttle import LoginThrottle
    from server.scaleout.node import Node
    from server.services.alerts import AlertService
    from server.services.broker_accounts import BrokerAccounts
    from server.services.orders.service import OrderService
    from server.storage.database import Database
    from server.websocket.connections import Connections


@dataclass
class Services:
    settings: Settings
    state: MarketState
    hub: MarketHub
    directory: SymbolDirectory
    feed_status: FeedStatusTracker
    database: Database | None = None
    streams: StreamRegistry = field(default_factory=StreamRegistry)
    bus: Bus | None = None
    analytics: Analytics | None = None
    alerts: AlertService | None = None
    users: UserService | None = None
    access: AccessControl | None = None
    login_throttle: LoginThrottle | None = None
    #: This process's open WebSockets by account (revocation lands here).
    connections: Connections | None = None
    delivery: AlertDelivery | None = None
    orders: OrderService | None = None
    #: AI analyses (``server.analysis``): the rule-based analyst without an API key.
    analysis: AnalysisService | None = None
    broker_accounts: BrokerAccounts | None = None
    #: With several processes (REDIS_URL): this one's role, and the relay's client.
    node: Node | None = None
    #: Every WebSocket of this process, anonymous ones included (for /metrics).
    sockets: SocketCounts = field(default_factory=SocketCounts)
    #: Subscription groups of this process (see server.delivery.multiplex).
    mux: Multiplexer = field(init=False)

    def __post_init__(self) -> None:
        self.mux = Multiplexer(self.streams)
