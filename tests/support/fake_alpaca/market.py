"""What every account of the fake shares: the assets with their mark prices, the clock,
whether the market is open, and the rules of the simulated venue."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from server.market.trading_day import NEW_YORK
from tests.support.fake_alpaca.orders import Asset
from tests.support.fake_alpaca.wire import exact, ns_of, ts_new_york

DEFAULT_ASSETS: dict[str, tuple[str, str]] = {
    # symbol: (mark price, listing exchange)
    "AAPL": ("190.00", "NASDAQ"),
    "MSFT": ("410.00", "NASDAQ"),
    "AMZN": ("180.00", "NASDAQ"),
    "SPY": ("520.00", "ARCA"),
    "IBM": ("170.00", "NYSE"),
}


@dataclass
class VenueRules:
    """How the simulated venue answers, switched by tests. With every switch on (the
    default) an order goes ``pending_new`` -> ``new`` as it is submitted, and a cancel or
    replace request completes at once; switched off, the step waits for the test
    (``fake.accept``, ``fake.confirm_cancel``, ``fake.confirm_replace`` or their
    ``reject_*`` counterparts), which is how races are staged."""

    auto_accept: bool = True
    auto_cancel: bool = True
    auto_replace: bool = True
    #: Fill market orders at the asset's mark price as soon as they are accepted.
    auto_fill_market: bool = False


class Market:
    def __init__(self, clock: Callable[[], int] | None = None) -> None:
        self.assets: dict[str, Asset] = {}
        self.rules = VenueRules()
        #: Not taken from the wall clock, so no test depends on the time of day.
        self.is_open = True
        self._clock = clock or time.time_ns
        self._last_ns = 0
        for symbol, (price, exchange) in DEFAULT_ASSETS.items():
            self.add_asset(symbol, price, exchange=exchange)

    def now_ns(self) -> int:
        """The fake's time, strictly increasing so that every event has its own instant
        and sorting by time is sorting by occurrence."""
        self._last_ns = max(self._clock(), self._last_ns + 1)
        return self._last_ns

    def add_asset(self, symbol: str, price: Decimal | str, **attributes: Any) -> Asset:
        asset = Asset(symbol.upper(), exact(price), **attributes)
        self.assets[asset.symbol] = asset
        return asset

    def asset(self, symbol_or_id: str) -> Asset | None:
        found = self.assets.get(symbol_or_id.upper())
        return found or next((a for a in self.assets.values() if a.id == symbol_or_id), None)

    def clock_json(self) -> dict[str, Any]:
        """``GET /v2/clock``. The next open and close follow the regular weekday session
        (09:30-16:00 New York, no holidays); ``is_open`` is whatever the test set."""
        now = self.now_ns()
        local = datetime.fromtimestamp(now / 1e9, UTC).astimezone(NEW_YORK)
        return {
            "timestamp": ts_new_york(now),
            "is_open": self.is_open,
            "next_open": ts_new_york(_next_session_time(local, 9, 30)),
            "next_close": ts_new_york(_next_session_time(local, 16, 0)),
        }


def _next_session_time(local: datetime, hour: int, minute: int) -> int:
    candidate = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    while candidate <= local or candidate.weekday() >= 5:
        candidate = (candidate + timedelta(days=1)).replace(hour=hour, minute=minute)
    return ns_of(candidate)
