"""Where a snapshot's inputs come from: small ports, and the implementations that exist.

- ``MarketInputs``: the live state of a symbol and its recent closed bars.
  ``LiveMarket`` reads the process's ``MarketState`` and the bars built in memory, and
  completes them from history (stored bars, Polygon REST or simulated history) when the
  memory holds too few: the same bars the live indicators are warmed up from.
- ``Holdings``: the caller's positions, open orders and account. Trading is wired in by
  the composition root (an adapter mapping the trading domain onto ``PositionView``,
  ``OrderView`` and ``AccountView``); ``NO_HOLDINGS`` is the honest answer of a server
  with no broker: nothing held.
- ``AlertsSource``: the caller's active alerts. ``StoredAlerts`` reads them from
  PostgreSQL.
- ``NewsSource``: recent headlines (``server.analysis.polygon_news.PolygonNews``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Protocol

from server.analysis.snapshot import AccountView, AlertView, NewsItem, OrderView, PositionView
from server.analysis.snapshot_build import alert_view
from server.errors import Unavailable
from server.history.provider import HistoryProvider
from server.market.bars import BarBook
from server.market.state import MarketState, SymbolState
from server.market.timeframes import Bar, Timeframe
from server.storage import alerts as alert_store

log = logging.getLogger(__name__)

ONE = Decimal(1)


class MarketInputs(Protocol):
    def state(self, symbol: str) -> SymbolState | None: ...

    def day(self, symbol: str) -> Bar | None:
        """The symbol's day bar (the session's statistics), if any."""
        ...

    async def closed_bars(
        self, symbol: str, timeframe: Timeframe, count: int, *, end_ms: int
    ) -> tuple[list[Bar], str | None]:
        """Up to ``count`` closed bars ending at or before ``end_ms``, oldest first, and a
        note when history could not be had."""
        ...


class Holdings(Protocol):
    async def position(self, user_id: uuid.UUID, symbol: str) -> PositionView | None: ...

    async def open_orders(self, user_id: uuid.UUID, symbol: str) -> Sequence[OrderView]: ...

    async def positions(self, user_id: uuid.UUID) -> Sequence[PositionView]: ...

    async def account(
        self, user_id: uuid.UUID, margin_multiplier: Decimal = ONE
    ) -> AccountView | None:
        """The account's equity, cash and buying power (at the tier's margin multiplier)."""
        ...


class AlertsSource(Protocol):
    async def active(self, user_id: uuid.UUID) -> Sequence[tuple[str, AlertView]]:
        """Every active alert of the user, with its symbol."""
        ...


class NewsSource(Protocol):
    async def headlines(self, symbol: str) -> tuple[list[NewsItem], str | None]: ...


class _NoHoldings:
    """No broker is wired: the caller holds nothing and has no orders."""

    async def position(self, user_id: uuid.UUID, symbol: str) -> PositionView | None:
        return None

    async def open_orders(self, user_id: uuid.UUID, symbol: str) -> Sequence[OrderView]:
        return ()

    async def positions(self, user_id: uuid.UUID) -> Sequence[PositionView]:
        return ()

    async def account(
        self, user_id: uuid.UUID, margin_multiplier: Decimal = ONE
    ) -> AccountView | None:
        return None


NO_HOLDINGS: Holdings = _NoHoldings()


class LiveMarket:
    def __init__(self, state: MarketState, book: BarBook | None, history: HistoryProvider) -> None:
        self._state = state
        self._book = book
        self._history = history

    def state(self, symbol: str) -> SymbolState | None:
        return self._state.get(symbol)

    def day(self, symbol: str) -> Bar | None:
        return self._book.day(symbol) if self._book is not None else None

    async def closed_bars(
        self, symbol: str, timeframe: Timeframe, count: int, *, end_ms: int
    ) -> tuple[list[Bar], str | None]:
        builder = self._book.get(symbol) if self._book is not None else None
        in_memory = [b for b in builder.recent(timeframe) if b.final] if builder else []
        in_memory = [b for b in in_memory if b.end_ms <= end_ms][-count:]
        if len(in_memory) >= count:
            return in_memory, None
        first = in_memory[0].start_ms if in_memory else end_ms
        note = None
        try:
            older = await self._history.bars(
                symbol, timeframe, end_ms=first, count=count - len(in_memory)
            )
        except Unavailable as exc:
            older = []
            note = f"no {timeframe.value} history ({exc.message}): indicators from fewer bars"
        except Exception:
            log.exception("history failed for %s %s", symbol, timeframe.value)
            older = []
            note = f"no {timeframe.value} history: indicators from fewer bars"
        bars = [b for b in older if b.end_ms <= first] + in_memory
        return bars[-count:], note


class StoredAlerts:
    """Active alerts from PostgreSQL (alerts are owned by the user id as text)."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    async def active(self, user_id: uuid.UUID) -> Sequence[tuple[str, AlertView]]:
        stored = await alert_store.list_alerts(self._pool, owner=str(user_id))
        return [
            (a.symbol, alert_view(str(a.id), a.definition))
            for a in stored
            if a.enabled and not a.done
        ]
