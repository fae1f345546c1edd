"""Building the analysis service from the settings: what the composition root calls.

    service = build_analysis(settings, pool=..., state=..., book=analytics.book,
                             history=..., rest=polygon_history_or_none,
                             orders=order_service, resolve_symbol=directory.resolve)
    ...
    await close_analysis(service)   # background analyses cancelled, the client closed

The analyst is Anthropic's when ``ANTHROPIC_API_KEY`` is set, else the rule-based one;
headlines come through the Polygon REST clients of the history provider when there are
some; holdings are the order service's book.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from server.analysis.anthropic_analyst import AnthropicAnalyst
from server.analysis.holdings import TradingHoldings
from server.analysis.inputs import NO_HOLDINGS, LiveMarket, StoredAlerts
from server.analysis.offline import OfflineAnalyst
from server.analysis.polygon_news import PolygonNews
from server.analysis.port import Analyst
from server.analysis.service import AnalysisService, AnalysisSettings
from server.history.polygon import PolygonHistory
from server.history.provider import HistoryProvider
from server.market.bars import BarBook
from server.market.state import MarketState
from server.services.orders.service import OrderService
from server.settings import Settings


def make_analyst(settings: Settings) -> Analyst:
    """The Anthropic analyst when ``ANTHROPIC_API_KEY`` is set, else the offline one."""
    if settings.anthropic_api_key is None:
        return OfflineAnalyst()
    return AnthropicAnalyst(
        settings.anthropic_api_key,
        model=settings.anthropic_model,
        base_url=settings.anthropic_base_url,
        max_tokens=settings.anthropic_max_tokens,
        timeout_s=settings.anthropic_timeout_s,
        total_timeout_s=settings.analysis_timeout_s,
        max_retries=settings.anthropic_max_retries,
    )


async def close_analyst(analyst: Analyst) -> None:
    if isinstance(analyst, AnthropicAnalyst):
        await analyst.aclose()


def make_news(rest: PolygonHistory | None) -> PolygonNews | None:
    """Headlines through the Polygon REST clients of the history provider, when there is
    one (a Polygon key and a REST URL)."""
    return PolygonNews(rest) if rest is not None else None


def analysis_settings(settings: Settings) -> AnalysisSettings:
    return AnalysisSettings(
        cache_ttl_s=settings.analysis_cache_ttl_s,
        timeout_s=settings.analysis_timeout_s,
        max_running=settings.analysis_max_running,
        stale_after_s=settings.stale_after_s,
    )


def build_analysis(
    settings: Settings,
    *,
    pool: Any,
    state: MarketState,
    book: BarBook | None,
    history: HistoryProvider,
    rest: PolygonHistory | None,
    orders: OrderService | None,
    resolve_symbol: Callable[[str], str],
) -> AnalysisService:
    """The analysis service over this process's market data, bars, orders and alerts."""
    return AnalysisService(
        pool=pool,
        analyst=make_analyst(settings),
        market=LiveMarket(state, book, history),
        holdings=TradingHoldings(orders) if orders is not None else NO_HOLDINGS,
        alerts=StoredAlerts(pool),
        news=make_news(rest),
        resolve_symbol=resolve_symbol,
        settings=analysis_settings(settings),
    )


async def close_analysis(service: AnalysisService) -> None:
    """Shutdown: background analyses cancelled (not charged), then the analyst's client."""
    try:
        await service.aclose()
    finally:
        await close_analyst(service.analyst)
