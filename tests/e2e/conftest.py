"""Fixtures for end-to-end tests: real upstream servers, a real tickgraph, real clients."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from server.settings import MarketSource, PolygonEndpoint, Secret, Settings
from streams.polygon_server import PolygonProtocolServer
from tests.support.browser import chromium
from tests.support.postgres import settings_for
from tests.support.timing import TIMEOUT

SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings(fresh_database_url: str, tmp_path: Path) -> SettingsFactory:
    """Settings for a server on a fresh database, fed by ``upstream``."""

    def make(upstream: PolygonProtocolServer, **overrides: Any) -> Settings:
        base = settings_for(fresh_database_url, tmp_path)
        defaults: dict[str, Any] = {
            "market_source": MarketSource.POLYGON,
            "polygon_api_key": Secret("test-key"),
            "polygon_endpoint": PolygonEndpoint(f"127.0.0.1:{upstream.port}", False, "stocks"),
            "feed_backoff_initial_s": 0.05,
            "feed_backoff_max_s": 0.2,
        }
        return dataclasses.replace(base, **(defaults | overrides))

    return make


async def eventually(check: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Wait until ``check()`` is true; fail with ``what`` after ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            while not check():  # noqa: ASYNC110 - polling a plain predicate
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for: {what}") from None


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Headless Chromium (tests.support.browser); a missing one fails the test."""
    async with chromium() as launched:
        yield launched
