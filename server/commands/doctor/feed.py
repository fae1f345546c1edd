"""The market-data feed.

- No Polygon settings: the built-in simulated market; nothing to reach.
- A URL without a key (a local replay), or any loopback URL: connect, wait for
  Polygon's ``connected`` status, authenticate, close.
- A real Polygon key: connect and wait for ``connected`` (reachable, TLS, the right
  protocol), but do **not** authenticate on the WebSocket: most Polygon plans allow one
  connection per key, and a second authenticated one takes the running server's feed
  away (``max_connections``). The key is checked against Polygon REST instead (one
  aggregates request), which does not count against that limit.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

from websockets.asyncio.client import connect

from server.commands.doctor.config import feed_on_loopback
from server.commands.doctor.finding import Finding, describe_error, fail, ok, warn
from server.settings import LOCAL_REPLAY_KEY, MarketSource, Secret, Settings

AREA = "feed"
#: A fixed, long-past trading day: any plan has its daily bars.
PROBE_DAY = "2024-01-02"


async def check(settings: Settings, timeout_s: float) -> list[Finding]:
    if settings.market_source is MarketSource.SIMULATED:
        return [ok(AREA, "simulated market (no POLYGON_API_KEY or POLYGON_WS_URL)")]
    assert settings.polygon_api_key is not None
    url = settings.polygon_endpoint.url
    local = settings.polygon_api_key == Secret(LOCAL_REPLAY_KEY) or feed_on_loopback(settings)
    key = settings.polygon_api_key.reveal() if local else None
    try:
        said = await asyncio.wait_for(_converse(url, key), timeout_s)
    except Exception as exc:
        return [fail(AREA, f"{url}: {describe_error(exc)}")]
    if said is not None:
        return [fail(AREA, f"{url}: {said}")]
    if local:
        what = "replay" if settings.polygon_api_key == Secret(LOCAL_REPLAY_KEY) else "feed"
        return [ok(AREA, f"{what} at {url} reachable, authenticated")]
    reached = f"{url} reachable (not authenticated there: it would take the server's connection)"
    if settings.polygon_rest_url is None:
        return [warn(AREA, f"{reached}; the API key is unchecked (no POLYGON_REST_URL)")]
    refused = await asyncio.to_thread(_rest_key_check, settings, timeout_s)
    if refused is not None:
        return [fail(AREA, f"{reached}; {refused}")]
    return [ok(AREA, f"{reached}; API key accepted by {settings.polygon_rest_url}")]


async def _converse(url: str, key: str | None) -> str | None:
    """None when the server greeted us (and accepted ``key``, when given); else why not."""
    async with connect(url, open_timeout=None, close_timeout=1, max_size=1 << 20) as ws:
        status = _status(await ws.recv())
        if status != "connected":
            return f"expected Polygon's 'connected' status, got {status!r}"
        if key is None:
            return None
        await ws.send(json.dumps({"action": "auth", "params": key}))
        status = _status(await ws.recv())
        if status == "auth_success":
            return None
        if status == "auth_failed":
            return "the API key was refused (auth_failed)"
        return f"unexpected answer to auth: {status!r}"


def _status(frame: str | bytes) -> str | None:
    try:
        events: Any = json.loads(frame)
        return str(events[0]["status"]) if events[0].get("ev") == "status" else None
    except (ValueError, LookupError, TypeError, AttributeError):
        return None


def _rest_key_check(settings: Settings, timeout_s: float) -> str | None:
    assert settings.polygon_api_key is not None and settings.polygon_rest_url is not None
    symbol = settings.symbols[0]
    url = f"{settings.polygon_rest_url}/v2/aggs/ticker/{symbol}/range/1/day/{PROBE_DAY}/{PROBE_DAY}"
    request = urllib.request.Request(
        url, headers={"Authorization": f"Bearer {settings.polygon_api_key.reveal()}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read(65_536)
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            return f"the API key was refused by {settings.polygon_rest_url} ({exc.code})"
        return f"{settings.polygon_rest_url} answered {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{settings.polygon_rest_url} unreachable: {describe_error(exc)}"
    return None
