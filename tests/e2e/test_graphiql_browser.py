"""GraphiQL in a real browser, offline (tests.support.browser: Debian's Chromium driven
by Playwright, every request to anything but the server under test refused). It must
load from the server alone, preload the README's subscription, run a query and that
subscription, and carry the Headers pane's token to the WebSocket. A screenshot is kept
as an artifact."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.web.graphiql import DEFAULT_QUERY
from streams.polygon_server import start_simulated_server
from tests.e2e.conftest import SettingsFactory, eventually
from tests.support.accounts import bearer, sign_up
from tests.support.browser import offline_page, screenshot
from tests.support.server import RunningServer, running_server
from tests.support.timing import TIMEOUT

QUERY_EDITOR = ".graphiql-query-editor .CodeMirror"
RESULT = ".result-window .CodeMirror"


@pytest.fixture
async def server(make_settings: SettingsFactory) -> AsyncIterator[RunningServer]:
    async with await start_simulated_server(["AAPL", "MSFT"], seed=11, rate=20.0) as upstream:
        async with running_server(make_settings(upstream, symbols=("AAPL", "MSFT"))) as srv:
            yield srv


async def editor_text(page: Any, selector: str) -> str:
    text: str = await page.evaluate(
        "(s) => document.querySelector(s).CodeMirror.getValue()", selector
    )
    return text


async def set_editor(page: Any, selector: str, text: str) -> None:
    await page.evaluate(
        "([s, text]) => document.querySelector(s).CodeMirror.setValue(text)", [selector, text]
    )


async def set_query(page: Any, text: str) -> None:
    """Replace the query, as typing would, and wait until GraphiQL took it in: it reads
    the editor after a short debounce (then stores it), and Run before that would send
    the old operation name with the new text."""
    await set_editor(page, QUERY_EDITOR, text)
    await page.wait_for_function(
        "(text) => localStorage.getItem('graphiql:query') === text",
        arg=text,
        timeout=TIMEOUT * 1000,
    )


async def wait_for_result(page: Any, *fragments: str) -> str:
    """The result pane once it holds every fragment (a subscription's newest message)."""
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    try:
        await page.wait_for_function(
            """(fragments) => {
                const el = document.querySelector('.result-window .CodeMirror');
                const text = el ? el.CodeMirror.getValue() : '';
                return fragments.every((f) => text.includes(f));
            }""",
            arg=list(fragments),
            timeout=TIMEOUT * 1000,
        )
    except PlaywrightTimeout:
        shown = await editor_text(page, RESULT)
        raise AssertionError(f"the result pane never showed {fragments}: {shown!r}") from None
    return await editor_text(page, RESULT)


async def test_graphiql_runs_a_query_and_the_readme_subscription_offline(
    browser: Any, server: RunningServer
) -> None:
    origin = server.http
    async with offline_page(browser, origin) as offline:
        await _run_query_and_subscriptions(offline.page, server)
    assert offline.refused == [], "GraphiQL asked for something other than this server"
    assert offline.problems == []


async def _run_query_and_subscriptions(page: Any, server: RunningServer) -> None:
    origin = server.http
    await page.goto(f"{origin}/graphql", wait_until="load")
    await page.wait_for_selector(QUERY_EDITOR, timeout=TIMEOUT * 1000)
    # A new visitor finds the README's first example ready to run.
    assert await editor_text(page, QUERY_EDITOR) == DEFAULT_QUERY

    # A query, over HTTP.
    await set_query(page, "{ feedStatus { source state } symbols { symbol } }")
    await page.click(".graphiql-execute-button")
    result = json.loads(await wait_for_result(page, '"state": "CONNECTED"'))
    assert {s["symbol"] for s in result["data"]["symbols"]} == {"AAPL", "MSFT"}

    # The README's subscription, over the WebSocket: the snapshot, then live quotes.
    await set_query(page, DEFAULT_QUERY)
    await page.click(".graphiql-execute-button")
    live = json.loads(await wait_for_result(page, '"snapshot": false'))["data"]["quotes"]
    assert live["symbol"] in ("AAPL", "MSFT") and 0 < live["bidPrice"] < live["askPrice"]
    await screenshot(page, "graphiql")
    await page.click(".graphiql-execute-button")  # stop

    # A private subscription with the token pasted in the Headers pane: the page sends
    # it in connection_init, and an alert's firing shows up in the result pane.
    async with httpx.AsyncClient(base_url=origin) as http:
        account = await sign_up(http)
        await page.click("button:has-text('Headers')")
        headers = ".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror"
        await set_editor(
            page, headers, json.dumps({"Authorization": f"Bearer {account['accessToken']}"})
        )
        # (GraphiQL takes the headers in with the same debounce as the query, which
        # set_query waits for.)
        await set_query(page, "subscription { alertEvents { alertId symbol values } }")
        await page.click(".graphiql-execute-button")
        quota = server.runtime.services.access.quota  # type: ignore[union-attr]
        await eventually(
            lambda: quota.usage(account["id"]).subscriptions == 1, "the subscription as the user"
        )
        created = await http.post(
            "/graphql",
            headers=bearer(account["accessToken"]),
            json={
                "query": """mutation { createAlert(input: { symbol: "AAPL",
                  conditions: [{ left: { price: LAST }, op: GREATER_THAN, value: 1 }] }) { id } }"""
            },
        )
        alert_id = created.json()["data"]["createAlert"]["id"]
    fired = json.loads(await wait_for_result(page, alert_id))["data"]["alertEvents"]
    assert fired["symbol"] == "AAPL" and fired["values"]


async def test_the_files_are_served_from_the_manifest_only(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.http) as http:
        page = await http.get("/graphql", headers={"accept": "text/html"})
        assert page.status_code == 200
        script = page.text.split('<script src="', 2)[1].split('"', 1)[0]
        assert script.startswith("/static/vendor/react@")
        served = await http.get(script)
        other = await http.get("/static/vendor/manifest.json")
        outside = await http.get("/static/vendor/../app.py")
    assert served.status_code == 200
    assert served.headers["content-type"].startswith("text/javascript")
    assert "immutable" in served.headers["cache-control"]
    assert other.status_code == 404 and outside.status_code == 404


async def test_missing_files_are_explained_on_the_pages(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    async with await start_simulated_server(["AAPL"], seed=1, rate=5.0) as upstream:
        settings = make_settings(upstream, symbols=("AAPL",))
        async with running_server(settings, vendor_dir=tmp_path / "nothing") as srv:
            async with httpx.AsyncClient(base_url=srv.http) as http:
                page = await http.get("/graphql", headers={"accept": "text/html"})
                board = await http.get("/")
                api = await http.post("/graphql", json={"query": "{ feedStatus { state } }"})
    assert "GraphiQL is not installed on this server" in page.text
    # The board too (tests/e2e/test_board_serving.py serves it when its files are there).
    assert board.status_code == 503 and "<script" not in board.text
    assert "The board is not installed on this server" in board.text
    assert "./dev serve" in page.text and "npm ci" in page.text
    assert api.json()["data"]["feedStatus"]["state"]  # the API itself works
