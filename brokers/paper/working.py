"""The matching engine's mutable record of one order it works.

Prices are integers of $0.0001 (``money.ticks_of``) so that books compare ints;
quantities stay ``Decimal`` (they are only touched when something fills).
"""

from __future__ import annotations

from decimal import Decimal
from enum import IntEnum

from server.trading.calendar import Session
from server.trading.model import Order, OrderType, Side
from server.trading.money import ZERO, ticks_of
from server.trading.states import OrderStatus

#: Scale of trailing-stop comparisons: prices * SCALE, percents in millionths.
SCALE = 1_000_000

REGULAR = 0
EXTENDED = 1


class Mode(IntEnum):
    """What the order is doing in the engine."""

    WAITING = 0  # accepted, waiting for its window to open
    HELD = 1  # a leg waiting for its entry
    MARKET = 2  # taking liquidity (a market order, or a triggered stop)
    LIMIT = 3  # resting at its limit (a limit, or a triggered stop-limit)
    STOP = 4  # waiting for a trade at or through its stop
    TRAILING = 5  # a trailing stop following the market
    AUCTION = 6  # OPG/CLS, waiting for its auction
    DONE = 7


class Working:
    __slots__ = (
        "ack",
        "children",
        "cluster",
        "expires_ms",
        "fill_count",
        "filled",
        "filled_value",
        "limit",
        "mode",
        "notional_left",
        "order",
        "parent",
        "qty",
        "seq",
        "session",
        "sibling",
        "status",
        "stop",
        "trail_abs",
        "trail_ppm",
        "triggered",
        "version",
        "water",
        "window",
    )

    def __init__(self, order: Order, seq: int) -> None:
        spec = order.spec
        self.order = order
        #: Submission order: time priority among orders at the same price.
        self.seq = seq
        self.status = OrderStatus.PENDING_NEW
        self.ack = OrderStatus.PENDING_NEW
        self.qty: Decimal | None = spec.qty
        self.filled = ZERO
        self.filled_value = ZERO
        self.notional_left: Decimal | None = spec.notional
        self.fill_count = 0
        self.limit = ticks_of(spec.limit_price) if spec.limit_price is not None else 0
        self.stop = ticks_of(spec.stop_price) if spec.stop_price is not None else 0
        self.trail_abs = ticks_of(spec.trail_price) if spec.trail_price is not None else 0
        self.trail_ppm = int(spec.trail_percent * 10_000) if spec.trail_percent is not None else 0
        self.triggered = False
        self.mode = Mode.WAITING
        self.window = EXTENDED if spec.extended_hours else REGULAR
        #: Bumped whenever the order leaves a book: book entries with an older version
        #: are dead (books delete lazily).
        self.version = 0
        self.expires_ms: int | None = None
        self.session: Session | None = None
        #: The trailing stop's group in an indexed book, or its own water mark in the
        #: naive one (scaled price, in the book's orientation).
        self.cluster: object | None = None
        self.water: int | None = None
        self.parent: str | None = order.parent_id
        self.children: list[str] = []
        self.sibling: str | None = None

    @property
    def side(self) -> Side:
        return self.order.spec.side

    @property
    def is_buy(self) -> bool:
        return self.order.spec.side is Side.BUY

    @property
    def type(self) -> OrderType:
        return self.order.spec.type

    @property
    def remaining(self) -> Decimal | None:
        """Shares still to fill (``None`` for a notional order)."""
        return None if self.qty is None else self.qty - self.filled

    @property
    def done(self) -> bool:
        return self.mode is Mode.DONE

    def trail_key(self, water: int, buy: bool) -> int:
        """The scaled stop for ``water`` (in the book's orientation: negated for buys)."""
        if self.trail_abs:
            return (water - self.trail_abs) * SCALE
        return water * (SCALE + self.trail_ppm if buy else SCALE - self.trail_ppm)

    def __repr__(self) -> str:
        return f"Working({self.order.id}, {self.status}, {self.mode.name})"
