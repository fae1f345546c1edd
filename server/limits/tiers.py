"""What each subscription tier may do: the one table of limits.

| limit                        | anonymous | free  | pro   | elite  |
|------------------------------|-----------|-------|-------|--------|
| requests_per_minute          | 60        | 60    | 600   | 3000   |
| burst (requests at once)     | 20        | 20    | 100   | 300    |
| concurrent_subscriptions     | 5         | 5     | 50    | 200    |
| symbols_streamed (distinct)  | 10        | 10    | 200   | 1000   |
| alerts (stored)              | 0         | 20    | 200   | 1000   |
| analyses_per_day             | 0         | 5     | 100   | 1000   |
| orders_per_minute            | 0         | 10    | 60    | 300    |
| order_burst                  | 0         | 5     | 20    | 60     |
| max_order_value ($)          | 0         | 25k   | 250k  | 1M     |
| max_position_value ($)       | 0         | 50k   | 1M    | 5M     |
| margin_multiplier            | 1         | 1     | 2     | 2      |
| query_cost (one operation)   | 10000     | 10000 | 50000 | 200000 |
| alert firings/s (one alert)  | -         | 1     | 5     | 20     |
| alert firing burst (alert)   | -         | 5     | 20    | 50     |
| alert firings/s (one user)   | -         | 5     | 50    | 200    |
| alert firing burst (user)    | -         | 20    | 100   | 300    |

Why these numbers:

- Requests: 60/min with a burst of 20 covers a dashboard that loads a page of
  widgets at once and then polls; pro/elite are for programmatic clients.
  Subscriptions are the intended way to follow prices, so request rates stay modest.
- Subscriptions and symbols bound what one user costs the fan-out hub: every
  distinct symbol is a bus topic and a mailbox, whatever the number of
  subscriptions sharing it.
- Analyses call a paid language model, so they are counted per day.
- Orders go to the configured broker (the paper broker unless Alpaca is set up).
  Free users may trade: 10/min is far above manual trading and still stops a runaway
  script; the burst allows a bracket entry plus a few quick adjustments.
- Trading limits bound what one mistake can cost (``server.trading.risk`` applies them
  before an order reaches the broker): ``max_order_value`` is one order's estimated
  value, ``max_position_value`` what one symbol's position may be worth after the
  order (with the open orders on the same side). A free account is a cash account
  (``margin_multiplier`` 1: buying power is the cash, no short selling); pro and elite
  are Reg T margin accounts (2: positions worth up to twice the equity). Day-trading
  buying power (4x) is not offered.
- ``query_cost`` is in the units of ``schema.cost``: one point per selected field, a
  list's selection multiplied by the items it may return (``bars(limit: 5000) { open
  close }`` costs 10,001). 10,000 (the schema's default budget) lets a free user load
  a trading day of 1-minute bars with every field, about 2,400 points, several times
  over; pro and elite are for bulk history.
- Alert firings are bounded per alert and per user (wall-clock token buckets), so one
  alert that is true on every tick cannot flood the writer or its owner's stream: the
  durability lag is measured at these rates (loadtests/firing_durability.py). The
  bursts are sized so that a whole burst commits in one batch well inside the 50 ms
  lag target (a 1,000-row batch takes 45-90 ms to commit on the test machine). A firing
  above them is not delivered; it is counted on the alert (``suppressedCount``) and in
  the next delivered firing. A firing that ends its alert (ONCE) is never suppressed.
- Anonymous callers (no token; keyed per IP) get the free tier's read limits and no
  writes at all (``read_only``): no alerts, analyses or orders.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum


class Tier(StrEnum):
    FREE = "free"
    PRO = "pro"
    ELITE = "elite"


@dataclass(frozen=True, slots=True)
class TierLimits:
    """Limits for one tier. Counts are per user; rates are per user and minute."""

    #: Shown in error messages ("the free tier allows ...").
    name: str
    requests_per_minute: int
    #: Requests accepted at once before the per-minute rate applies (GCRA burst).
    burst: int
    concurrent_subscriptions: int
    #: Distinct symbols streamed at once, over all of the user's subscriptions.
    symbols_streamed: int
    alerts: int
    analyses_per_day: int
    orders_per_minute: int
    #: Orders accepted at once before the per-minute rate applies.
    order_burst: int
    #: Maximum cost of one GraphQL operation, subscriptions included.
    query_cost: int
    #: Alert firings delivered per second for one alert and for all of a user's
    #: alerts, with their bursts (GCRA, wall clock).
    alert_firings_per_second: float = 1.0
    alert_firing_burst: int = 5
    user_firings_per_second: float = 5.0
    user_firing_burst: int = 20
    #: Largest estimated value of one order, in dollars.
    max_order_value: Decimal = Decimal(0)
    #: Largest value of one symbol's position (long or short) after an order, in dollars.
    max_position_value: Decimal = Decimal(0)
    #: Buying power per dollar of equity: 1 is a cash account, 2 Reg T margin.
    margin_multiplier: Decimal = Decimal(1)
    #: No mutations at all (anonymous callers).
    read_only: bool = False

    def __post_init__(self) -> None:
        if self.requests_per_minute < 1 or self.burst < 1:
            raise ValueError(f"{self.name}: requests_per_minute and burst must be at least 1")
        if (self.orders_per_minute == 0) != (self.order_burst == 0):
            # GCRA needs a positive rate and burst; zero means "no orders", not "unlimited".
            raise ValueError(
                f"{self.name}: orders_per_minute and order_burst are both 0 or both set"
            )
        counts = (
            self.concurrent_subscriptions,
            self.symbols_streamed,
            self.alerts,
            self.analyses_per_day,
            self.orders_per_minute,
            self.order_burst,
            self.query_cost,
        )
        if any(n < 0 for n in counts):
            raise ValueError(f"{self.name}: limits must not be negative")
        firing = (
            self.alert_firings_per_second,
            self.alert_firing_burst,
            self.user_firings_per_second,
            self.user_firing_burst,
        )
        if not all(x > 0 for x in firing):
            raise ValueError(f"{self.name}: firing rates and bursts must be positive")
        if self.max_order_value < 0 or self.max_position_value < 0:
            raise ValueError(f"{self.name}: limits must not be negative")
        if not (Decimal(1) <= self.margin_multiplier <= Decimal(4)):
            raise ValueError(f"{self.name}: margin_multiplier is between 1 and 4")

    @property
    def requests_per_second(self) -> float:
        return self.requests_per_minute / 60.0

    @property
    def orders_per_second(self) -> float:
        """0.0 when the tier may not place orders (check ``can_trade`` first)."""
        return self.orders_per_minute / 60.0

    @property
    def can_trade(self) -> bool:
        return not self.read_only and self.orders_per_minute > 0


FREE = TierLimits(
    name="free",
    requests_per_minute=60,
    burst=20,
    concurrent_subscriptions=5,
    symbols_streamed=10,
    alerts=20,
    analyses_per_day=5,
    orders_per_minute=10,
    order_burst=5,
    query_cost=10_000,
    max_order_value=Decimal(25_000),
    max_position_value=Decimal(50_000),
    margin_multiplier=Decimal(1),
)

PRO = TierLimits(
    name="pro",
    requests_per_minute=600,
    burst=100,
    concurrent_subscriptions=50,
    symbols_streamed=200,
    alerts=200,
    analyses_per_day=100,
    orders_per_minute=60,
    order_burst=20,
    query_cost=50_000,
    alert_firings_per_second=5.0,
    alert_firing_burst=20,
    user_firings_per_second=50.0,
    user_firing_burst=100,
    max_order_value=Decimal(250_000),
    max_position_value=Decimal(1_000_000),
    margin_multiplier=Decimal(2),
)

ELITE = TierLimits(
    name="elite",
    requests_per_minute=3000,
    burst=300,
    concurrent_subscriptions=200,
    symbols_streamed=1000,
    alerts=1000,
    analyses_per_day=1000,
    orders_per_minute=300,
    order_burst=60,
    query_cost=200_000,
    alert_firings_per_second=20.0,
    alert_firing_burst=50,
    user_firings_per_second=200.0,
    user_firing_burst=300,
    max_order_value=Decimal(1_000_000),
    max_position_value=Decimal(5_000_000),
    margin_multiplier=Decimal(2),
)

#: Callers without a token: the free tier's read limits, nothing that writes.
ANONYMOUS = TierLimits(
    name="anonymous",
    requests_per_minute=FREE.requests_per_minute,
    burst=FREE.burst,
    concurrent_subscriptions=FREE.concurrent_subscriptions,
    symbols_streamed=FREE.symbols_streamed,
    alerts=0,
    analyses_per_day=0,
    orders_per_minute=0,
    order_burst=0,
    query_cost=FREE.query_cost,
    read_only=True,
)

_BY_TIER = {Tier.FREE: FREE, Tier.PRO: PRO, Tier.ELITE: ELITE}


def limits_for(tier: Tier | None) -> TierLimits:
    """The limits of ``tier``; ``None`` means an anonymous caller."""
    if tier is None:
        return ANONYMOUS
    return _BY_TIER[tier]
