"""How the board is served, over plain HTTP against a running server: a strict
Content-Security-Policy and no inline script, the chart library by version and
integrity, the board's own files revalidated by ETag, nothing outside the allow-list,
and ``/`` given back to GraphiQL when the board is off."""

from __future__ import annotations

import dataclasses
import re

import httpx

from server.web import assets
from server.web.board import BOARD_DIR
from streams.polygon_server import start_simulated_server
from tests.e2e.conftest import SettingsFactory
from tests.support.server import running_server


async def test_the_board_page_is_served_with_a_strict_policy(
    make_settings: SettingsFactory,
) -> None:
    async with await start_simulated_server(["AAPL"], seed=1, rate=5.0) as upstream:
        async with running_server(make_settings(upstream, symbols=("AAPL",))) as srv:
            async with httpx.AsyncClient(base_url=srv.http) as http:
                page = await http.get("/")
                library = re.search(r'<script src="([^"]+)" integrity="([^"]+)"', page.text)
                assert library is not None, page.text
                vendor = await http.get(library.group(1))
                module = await http.get("/board/js/main.js")
                again = await http.get(
                    "/board/js/main.js", headers={"if-none-match": module.headers["etag"]}
                )
                refused = [
                    (await http.get(path)).status_code
                    for path in (
                        "/board/index.html",
                        "/board/js/nothing.js",
                        "/board/../app.py",
                        "/board/%2e%2e/board.py",
                    )
                ]

    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    assert "unsafe" not in policy and "frame-ancestors 'none'" in policy
    assert "connect-src 'self'" in policy and "default-src 'none'" in policy
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-cache"
    # No inline script or handler: every <script> names its file.
    assert all('src="' in tag for tag in re.findall(r"<script[^>]*>", page.text))
    assert not re.search(r"\son[a-z]+=", page.text)

    assert library.group(1).startswith("/static/vendor/lightweight-charts@")
    assert vendor.status_code == 200 and "immutable" in vendor.headers["cache-control"]
    assert library.group(2) == assets.integrity(vendor.content)

    assert module.status_code == 200
    assert module.headers["content-type"].startswith("text/javascript")
    assert module.headers["cache-control"] == "no-cache"
    assert module.content == (BOARD_DIR / "js" / "main.js").read_bytes()
    assert again.status_code == 304 and again.content == b""
    assert refused == [404, 404, 404, 404]


async def test_with_the_board_off_root_goes_to_graphiql(make_settings: SettingsFactory) -> None:
    async with await start_simulated_server(["AAPL"], seed=1, rate=5.0) as upstream:
        settings = dataclasses.replace(make_settings(upstream, symbols=("AAPL",)), board=False)
        async with running_server(settings) as srv:
            async with httpx.AsyncClient(base_url=srv.http) as http:
                root = await http.get("/")
                module = await http.get("/board/js/main.js")
    assert root.status_code == 307 and root.headers["location"] == "/graphql"
    assert module.status_code == 404
