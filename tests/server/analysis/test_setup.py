"""Analysis settings, and the analyst and news the composition root builds from them."""

from __future__ import annotations

import pytest

from server.analysis.anthropic_analyst import AnthropicAnalyst
from server.analysis.offline import OfflineAnalyst
from server.analysis.polygon_news import PolygonNews
from server.analysis.setup import analysis_settings, close_analyst, make_analyst, make_news
from server.history.polygon import PolygonHistory
from server.settings import DEFAULT_ANTHROPIC_MODEL, Settings, SettingsError


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s.anthropic_api_key is None
    assert s.anthropic_model == DEFAULT_ANTHROPIC_MODEL == "claude-sonnet-4-6"
    assert s.anthropic_base_url is None
    assert (s.anthropic_timeout_s, s.analysis_timeout_s) == (30.0, 120.0)
    assert (s.anthropic_max_tokens, s.anthropic_max_retries) == (2048, 0)
    assert (s.analysis_cache_ttl_s, s.analysis_max_running) == (60.0, 2)
    assert s.describe()["analyst"] == "rule-based"


def test_values_are_parsed() -> None:
    s = Settings.from_env(
        {
            "ANTHROPIC_API_KEY": "sk-ant-secret-value",
            "ANTHROPIC_MODEL": "claude-haiku-4-5-20251001",
            "ANTHROPIC_BASE_URL": "http://127.0.0.1:9999/",
            "ANTHROPIC_TIMEOUT": "5",
            "TICKGRAPH_ANALYSIS_TIMEOUT": "45",
            "ANTHROPIC_MAX_TOKENS": "4096",
            "ANTHROPIC_MAX_RETRIES": "1",
            "TICKGRAPH_ANALYSIS_CACHE_TTL": "0",
            "TICKGRAPH_ANALYSIS_MAX_RUNNING": "3",
        }
    )
    assert s.anthropic_model == "claude-haiku-4-5-20251001"
    assert s.anthropic_base_url == "http://127.0.0.1:9999"
    assert (s.anthropic_timeout_s, s.analysis_timeout_s, s.anthropic_max_tokens) == (
        5.0,
        45.0,
        4096,
    )
    assert (s.anthropic_max_retries, s.analysis_cache_ttl_s, s.analysis_max_running) == (1, 0.0, 3)
    assert s.describe()["analyst"] == "claude-haiku-4-5-20251001"
    assert "sk-ant-secret-value" not in repr(s) and "sk-ant-secret-value" not in str(s.describe())
    assert "sk-ant-secret-value" in s.secret_values()  # redacted from every log line


def test_bad_values_are_named() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(
            {
                "ANTHROPIC_MODEL": "Claude Sonnet!",
                "ANTHROPIC_BASE_URL": "ftp://x",
                "ANTHROPIC_TIMEOUT": "0",
                "ANTHROPIC_MAX_TOKENS": "10",
                "ANTHROPIC_MAX_RETRIES": "9",
            }
        )
    names = [p.split("=")[0].split(":")[0] for p in info.value.problems]
    assert names == [
        "ANTHROPIC_MODEL",
        "ANTHROPIC_BASE_URL",
        "ANTHROPIC_TIMEOUT",
        "ANTHROPIC_MAX_TOKENS",
        "ANTHROPIC_MAX_RETRIES",
    ]


async def test_the_analyst_follows_the_key() -> None:
    assert isinstance(make_analyst(Settings.from_env({})), OfflineAnalyst)
    settings = Settings.from_env(
        {"ANTHROPIC_API_KEY": "sk-ant-secret-value", "ANTHROPIC_MODEL": "claude-opus-4-6"}
    )
    analyst = make_analyst(settings)
    assert isinstance(analyst, AnthropicAnalyst) and analyst.label == "claude-opus-4-6"
    assert "sk-ant-secret-value" not in repr(analyst)
    await close_analyst(analyst)
    await close_analyst(OfflineAnalyst())


def test_news_and_service_settings() -> None:
    assert make_news(None) is None
    news = make_news(PolygonHistory("k-123456", base_url="http://127.0.0.1:1"))
    assert isinstance(news, PolygonNews) and "k-123456" not in repr(news)
    s = analysis_settings(
        Settings.from_env({"TICKGRAPH_ANALYSIS_CACHE_TTL": "5", "TICKGRAPH_STALE_AFTER": "3"})
    )
    assert (s.cache_ttl_s, s.stale_after_s, s.timeout_s, s.max_running) == (5.0, 3.0, 120.0, 2)
