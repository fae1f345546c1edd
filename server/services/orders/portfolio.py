"""A user's portfolio as it moves: live valuations for subscriptions, and the equity
curve and performance from the ledger's fills and the stored bars.

``PortfolioWatch`` follows the quotes and trades of the symbols the user holds (the
set changes as fills arrive on ``account.<owner>``) and hands the subscription a tiny
token per change; the valuation itself is computed when the subscription renders, at
most once per throttle interval, so a busy symbol costs a tuple per tick, not a
revaluation per tick.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from decimal import Decimal
from typing import Any

from server.delivery.bus import Bus
from server.delivery.hub import Attachment, MarketHub
from server.errors import InvalidInput
from server.market.timeframes import Timeframe
from server.services.orders.service import OrderService
from server.storage.bars import MAX_LOAD_LIMIT, load_bars
from server.storage.order_reads import load_fills
from server.trading.account import Account, PositionValue, Valuation
from server.trading.money import price_from_feed
from server.trading.performance import (
    EquityPoint,
    MarkSample,
    Performance,
    equity_curve,
    performance,
)
from server.trading.positions import Position
from streams.events import Received

ZERO = Decimal(0)


class PortfolioWatch:
    def __init__(
        self,
        service: OrderService,
        owner: str,
        hub: MarketHub,
        bus: Bus,
        topic: str,
        *,
        per_symbol: bool,
        multiplier: Decimal = Decimal(1),
    ) -> None:
        self._service = service
        self._owner = owner
        self._hub = hub
        self._bus = bus
        self._topic = topic
        self._per_symbol = per_symbol
        self._multiplier = multiplier
        self._sink: Callable[[Any], None] | None = None
        self._symbols: tuple[str, ...] = ()
        self._attachments: list[Attachment] = []

    @property
    def account(self) -> Account:
        return self._service.book.user(self._owner).account

    # -- what the subscription renders -----------------------------------------------

    def position_value(self, symbol: str) -> PositionValue:
        account = self.account
        position = account.positions.get(symbol) or Position(symbol)
        mark = self._service.market.mark(symbol) or account.last_prices.get(symbol)
        if mark is None:  # never traded, never filled: valued at cost
            mark = ZERO
        if not position.qty:
            return PositionValue(position, mark, ZERO, ZERO)
        market_value = position.market_value(mark)
        return PositionValue(position, mark, market_value, market_value - position.cost_basis)

    def valuation(self) -> tuple[Account, Valuation]:
        account = self.account
        marks = self._service.market.marks(set(account.positions))
        return account, account.value(marks, self._multiplier)

    def render_item(self, token: tuple[PortfolioWatch, str | None]) -> Any:
        _, symbol = token
        return self.valuation() if symbol is None else self.position_value(symbol)

    def key(self, token: tuple[PortfolioWatch, str | None]) -> Hashable:
        return token[1]

    def snapshot(self) -> list[tuple[PortfolioWatch, str | None]]:
        if not self._per_symbol:
            return [(self, None)]
        return [(self, s) for s in sorted(self.account.positions)]

    # -- following the market and the account ------------------------------------------

    def attach(self, sink: Callable[[Any], None]) -> Callable[[], None]:
        self._sink = sink
        self._bus.subscribe(self._topic, self._on_account)
        self._follow()
        return self._close

    def _close(self) -> None:
        self._bus.unsubscribe(self._topic, self._on_account)
        for attachment in self._attachments:
            attachment.close()
        self._attachments = []
        self._sink = None

    def _follow(self) -> None:
        symbols = tuple(sorted(self.account.positions))
        if symbols == self._symbols:
            return
        for attachment in self._attachments:
            attachment.close()
        self._symbols = symbols
        self._attachments = (
            [
                self._hub.attach("Q", symbols, self._on_market),
                self._hub.attach("T", symbols, self._on_market),
            ]
            if symbols
            else []
        )

    def _on_market(self, item: Received) -> None:
        sink = self._sink
        if sink is not None:
            sink((self, item.event.sym if self._per_symbol else None))

    def _on_account(self, _message: object) -> None:
        sink = self._sink
        if sink is None:
            return
        before = set(self._symbols)
        self._follow()
        if not self._per_symbol:
            sink((self, None))
            return
        # Every held symbol (a fill changed one of them), and any closed to zero.
        for symbol in sorted(before | set(self._symbols)):
            sink((self, symbol))


# -- history ------------------------------------------------------------------------------

_HISTORY_TIMEFRAMES = {"1m": Timeframe.M1, "1d": Timeframe.D1}


async def _curve(
    service: OrderService, owner: str, from_ms: int, to_ms: int, *, timeframe: str, now_ms: int
) -> tuple[list[EquityPoint], list[Any]]:
    tf = _HISTORY_TIMEFRAMES.get(timeframe)
    if tf is None:
        raise InvalidInput("timeframe is 1m or 1d", field="timeframe")
    if to_ms < from_ms:
        raise InvalidInput("`to` is before `from`", field="to")
    book = await service.user(owner)
    fills = [f for _, f in await load_fills(service.pool, owner) if f.time_ms <= to_ms]
    marks: list[MarkSample] = []
    for symbol in sorted({f.symbol for f in fills}):
        bars = await load_bars(
            service.pool, symbol, tf, start_ms=from_ms, end_ms=to_ms, limit=MAX_LOAD_LIMIT
        )
        marks.extend(MarkSample(b.end_ms, symbol, price_from_feed(b.close)) for b in bars)
    marks.sort(key=lambda m: (m.time_ms, m.symbol))
    curve = [
        p
        for p in equity_curve(book.account.starting_cash, fills, marks)
        if from_ms <= p.time_ms <= to_ms
    ]
    # The curve ends with the equity now, at the marks now, if ``to`` is not before
    # now (``now_ms``: the one "now" the caller defaulted ``to`` with, so a clock that
    # moves during the request cannot drop the point).
    now = now_ms
    if from_ms <= now <= to_ms:
        marks_now = service.market.marks(set(book.account.positions))
        curve.append(EquityPoint(now, book.account.value(marks_now).equity))
    return curve, fills


async def history(
    service: OrderService, owner: str, from_ms: int, to_ms: int, *, timeframe: str, now_ms: int
) -> list[EquityPoint]:
    curve, _ = await _curve(service, owner, from_ms, to_ms, timeframe=timeframe, now_ms=now_ms)
    return curve


async def performance_of(
    service: OrderService, owner: str, from_ms: int, to_ms: int, *, now_ms: int
) -> Performance:
    timeframe = "1m" if to_ms - from_ms <= 5 * 86_400_000 else "1d"
    curve, fills = await _curve(service, owner, from_ms, to_ms, timeframe=timeframe, now_ms=now_ms)
    return performance(curve, [f for f in fills if f.time_ms >= from_ms])
