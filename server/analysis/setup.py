"""Building the analysis service from the settings: what the composition root calls.

analyst = make_analyst(settings)            # Anthropic with a key, else rule-based
news = make_news(polygon_history)           # None without a Polygon REST client
service = AnalysisService(
    pool=database.pool,
    analyst=analyst,
    market=LiveMarket(state, analytics.book, history),
    holdings=...,                            # the trading adapter, or NO_HOLDINGS
    alerts=StoredAlerts(database.pool),
    news=news,
    resolve_symbol=directory.resolve,
    settings=analysis_settings(settings),
)
...
await service.aclose(); await close_analyst(analyst)
"""

from __future__ import annotations

from server.analysis.anthropic_analyst import AnthropicAnalyst
from server.analysis.offline import OfflineAnalyst
from server.analysis.polygon_news import PolygonNews
from server.analysis.port import Analyst
from server.analysis.service import AnalysisSettings
from server.history.polygon import PolygonHistory
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
