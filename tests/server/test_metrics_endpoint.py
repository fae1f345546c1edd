"""``/metrics`` settings and access, without a running server: who may scrape, what a
disabled endpoint looks like, and what a server that is not serving reports."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from server.app import create_app
from server.limits.errors import RateLimited
from server.settings import Environment, Secret, Settings, SettingsError

TOKEN = "0123456789abcdef0123"


def client(settings: Settings) -> httpx.AsyncClient:
    # No lifespan: the app serves without a runtime, as while it starts.
    app = create_app(settings)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


def test_settings() -> None:
    dev = Settings.from_env({})
    assert dev.metrics and dev.metrics_token is None
    # Production exposes nothing unless asked: with a token, or explicitly.
    assert not Settings.from_env({"TICKGRAPH_ENV": "production"}).metrics
    prod = Settings.from_env({"TICKGRAPH_ENV": "production", "TICKGRAPH_METRICS_TOKEN": TOKEN})
    assert prod.metrics and prod.metrics_token == Secret(TOKEN)
    assert TOKEN in prod.secret_values()
    assert prod.describe()["metrics"] == "token"
    assert Settings.from_env({"TICKGRAPH_METRICS": "false"}).describe()["metrics"] == "off"
    with pytest.raises(SettingsError) as short:
        Settings.from_env({"TICKGRAPH_METRICS_TOKEN": "short"})
    assert short.value.problems[0].startswith("TICKGRAPH_METRICS_TOKEN: must be at least 16")
    assert "short" not in str(short.value)  # a token is never echoed


async def test_disabled_is_absent() -> None:
    async with client(Settings(metrics=False, graphiql=False)) as http:
        assert (await http.get("/metrics")).status_code == 404


async def test_token_required() -> None:
    settings = Settings(metrics_token=Secret(TOKEN), graphiql=False)
    async with client(settings) as http:
        for headers in ({}, {"authorization": "Bearer nope"}, {"authorization": TOKEN}):
            refused = await http.get("/metrics", headers=headers)
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"].startswith("Bearer")
            assert "tickgraph_up" not in refused.text
        ok = await http.get("/metrics", headers={"authorization": f"bearer {TOKEN}"})
    assert ok.status_code == 200


async def test_not_serving_and_openmetrics() -> None:
    RateLimited("no", retry_after_s=1, kind="orders", tier="free")
    async with client(Settings(environment=Environment.DEVELOPMENT, graphiql=False)) as http:
        plain = await http.get("/metrics")
        open_metrics = await http.get(
            "/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"}
        )
    families = {f.name: f for f in text_string_to_metric_families(plain.text)}
    assert families["tickgraph_up"].samples[0].value == 0
    refused = {
        tuple(sorted(s.labels.items())): s.value
        for s in families["tickgraph_rate_limited"].samples
        if s.name.endswith("_total")
    }
    assert refused[(("limit", "orders"), ("tier", "free"))] >= 1
    assert "tickgraph_feed_events" not in families  # nothing to report before the feed
    assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
    assert open_metrics.text.endswith("# EOF\n")
