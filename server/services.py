"""Everything a request or a subscription needs, built once at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from server.fanout import MarketHub
from server.market_state import MarketState
from server.multiplex import Multiplexer
from server.settings import Settings
from server.stream_registry import StreamRegistry
from server.symbol_directory import SymbolDirectory
from streams.feed_status import FeedStatusTracker

if TYPE_CHECKING:
    from server.access import AccessControl
    from server.alert_service import AlertService
    from server.analytics import Analytics
    from server.auth.users import UserService
    from server.bus import Bus
    from server.database import Database
    from server.limits.login_throttle import LoginThrottle


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
    #: Subscription groups of this process (see server.multiplex).
    mux: Multiplexer = field(init=False)

    def __post_init__(self) -> None:
        self.mux = Multiplexer(self.streams)
