"""Gathering a snapshot's inputs: once per request, concurrently, bounded.

For a symbol: its closed bars on the style's two timeframes (up to the feed's own
clock), the caller's position and open orders, the account's equity (for the weight),
active alerts, preferences and headlines, all at once; then the pure build. For a
portfolio: every position (the largest ``MAX_HOLDINGS``) the same way without news, at
most ``GATHER_CONCURRENCY`` at a time, yielding to the event loop between holdings so a
large review never holds the loop for long.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from server.analysis.indicator_set import BARS_NEEDED
from server.analysis.inputs import NO_HOLDINGS, AlertsSource, Holdings, MarketInputs, NewsSource
from server.analysis.snapshot import (
    AlertView,
    NewsItem,
    PositionView,
    Preferences,
    Snapshot,
    SymbolSnapshot,
)
from server.analysis.snapshot_build import (
    PORTFOLIO_BARS_SHOWN,
    SYMBOL_BARS_SHOWN,
    SymbolInputs,
    portfolio_snapshot,
    symbol_snapshot,
    timeframes_for,
)
from server.market.timeframes import Bar, Timeframe
from server.storage import analyses as store
from streams.events import Trade

PORTFOLIO = "portfolio"
#: Holdings in one review (the largest by market value); more would not fit a prompt.
MAX_HOLDINGS = 50
#: Holdings whose inputs are gathered at once.
GATHER_CONCURRENCY = 8


class SnapshotGatherer:
    def __init__(
        self,
        *,
        pool: Any,
        market: MarketInputs,
        holdings: Holdings = NO_HOLDINGS,
        alerts: AlertsSource | None = None,
        news: NewsSource | None = None,
        stale_after_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._pool = pool
        self._market = market
        self._holdings = holdings
        self._alerts = alerts
        self._news = news
        self._stale_after_s = stale_after_s
        self._clock = clock

    async def symbol_snapshot(
        self,
        *,
        user_id: uuid.UUID,
        symbol: str,
        preferences: Preferences,
        alerts: Sequence[AlertView],
        portfolio: bool = False,
        equity: Decimal | None = None,
        position: PositionView | None = None,
    ) -> SymbolSnapshot:
        taken_ms = int(self._clock() * 1000)
        state = self._market.state(symbol)
        # Bars up to the feed's own clock (the last trade's exchange time), not the wall
        # clock: a replayed day gets the history of that day, as indicator warm-up does.
        last = state.last_trade.event if state is not None and state.last_trade else None
        end_ms = last.t if isinstance(last, Trade) else taken_ms
        signal, context = timeframes_for(preferences.style)
        bars_task = [
            self._market.closed_bars(symbol, tf, BARS_NEEDED, end_ms=end_ms)
            for tf in (signal, context)
        ]
        notes: list[str] = []
        news: list[NewsItem] = []
        all_bars = asyncio.gather(*bars_task)
        if portfolio:
            results, orders = await asyncio.gather(
                all_bars, self._holdings.open_orders(user_id, symbol)
            )
        else:
            results, position, orders, (news, news_note) = await asyncio.gather(
                all_bars,
                self._holdings.position(user_id, symbol),
                self._holdings.open_orders(user_id, symbol),
                self._headlines(symbol),
            )
            if news_note:
                notes.append(news_note)
        bars: dict[Timeframe, list[Bar]] = {}
        for tf, (series, note) in zip((signal, context), results, strict=True):
            bars[tf] = series
            if note:
                notes.append(note)
        return symbol_snapshot(
            SymbolInputs(
                symbol=symbol,
                state=state,
                bars=bars,
                day=self._market.day(symbol),
                position=position,
                orders=orders,
                alerts=alerts,
                news=news,
                preferences=preferences,
                notes=notes,
                equity=equity,
                taken_at_ms=taken_ms,
                stale_after_ms=int(self._stale_after_s * 1000),
                bars_shown=PORTFOLIO_BARS_SHOWN if portfolio else SYMBOL_BARS_SHOWN,
            )
        )

    async def _headlines(self, symbol: str) -> tuple[list[NewsItem], str | None]:
        if self._news is None:
            return [], None
        return await self._news.headlines(symbol)

    async def _alerts_by_symbol(self, user_id: uuid.UUID) -> dict[str, list[AlertView]]:
        out: dict[str, list[AlertView]] = {}
        if self._alerts is not None:
            for symbol, alert in await self._alerts.active(user_id):
                out.setdefault(symbol, []).append(alert)
        return out

    async def snapshot(
        self, *, user_id: uuid.UUID, subject: str, margin_multiplier: Decimal = Decimal(1)
    ) -> Snapshot:
        """The snapshot of one request: of a symbol, or of the whole portfolio (buying
        power at the caller's margin multiplier)."""
        preferences, alerts = await asyncio.gather(
            store.get_preferences(self._pool, user_id=user_id), self._alerts_by_symbol(user_id)
        )
        if subject != PORTFOLIO:
            account = await self._holdings.account(user_id, margin_multiplier)
            return await self.symbol_snapshot(
                user_id=user_id,
                symbol=subject,
                preferences=preferences,
                alerts=alerts.get(subject, []),
                equity=account.equity if account is not None else None,
            )
        account, positions = await asyncio.gather(
            self._holdings.account(user_id, margin_multiplier), self._holdings.positions(user_id)
        )
        ranked = sorted(positions, key=lambda p: (-abs(p.market_value), p.symbol))
        notes = []
        if len(ranked) > MAX_HOLDINGS:
            notes.append(f"only the {MAX_HOLDINGS} largest of {len(ranked)} positions are reviewed")
        equity = account.equity if account is not None else None
        gate = asyncio.Semaphore(GATHER_CONCURRENCY)

        async def one(position: PositionView) -> SymbolSnapshot:
            async with gate:
                built = await self.symbol_snapshot(
                    user_id=user_id,
                    symbol=position.symbol,
                    preferences=preferences,
                    alerts=alerts.get(position.symbol, []),
                    portfolio=True,
                    equity=equity,
                    position=position,
                )
            await asyncio.sleep(0)  # a large review never holds the loop for long
            return built

        holdings = await asyncio.gather(*(one(p) for p in ranked[:MAX_HOLDINGS]))
        return portfolio_snapshot(account, holdings, preferences=preferences, notes=notes)
