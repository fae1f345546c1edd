"""The GraphiQL page at ``/graphql``, built once at start-up from the installed files.

When the files are missing or fail their hash check, the page says so and how to fix
it, instead of leaving a browser at "Loading GraphiQL…".
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from server.web.assets import FIX_COMMAND, FIX_HINT, Assets, AssetsUnavailable

#: What a new GraphiQL tab holds: the README's first example.
DEFAULT_QUERY = """\
# Live quotes: each symbol's current quote first, then
# every update. Run with Ctrl+Enter or the ▶ button;
# README.md tours the whole API.
subscription LiveQuotes {
  quotes(symbols: ["AAPL", "MSFT"]) {
    symbol
    bidPrice bidSize askPrice askSize midPrice
    exchangeTime receivedAt snapshot
  }
}

# Or, as a query:
# { feedStatus { source state } symbols { symbol } }
"""

STYLESHEETS = ("graphiql/graphiql.min.css",)
#: In the order they must run: React, then what uses it.
SCRIPTS = (
    "react/umd/react.production.min.js",
    "react-dom/umd/react-dom.production.min.js",
    "graphql-ws/umd/graphql-ws.min.js",
    "graphiql/graphiql.min.js",
)

_TEMPLATE = (Path(__file__).parent / "graphiql.html").read_text()

_MISSING = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>tickgraph · GraphiQL unavailable</title>
<meta name="robots" content="noindex">
<style>body { font-family: system-ui, sans-serif; max-width: 46rem; margin: 3rem auto;
padding: 0 1rem; line-height: 1.5; } code { background: #f2f2f2; padding: 0 .25rem; }</style>
</head>
<body>
<h1>GraphiQL is not installed on this server</h1>
<p>tickgraph serves GraphiQL from pinned npm packages that are installed at set-up time,
and they are not there: <!-- reason -->.</p>
<p>To fix it, <!-- hint -->, then restart the server.</p>
<p>The API itself works: POST queries to <code>/graphql</code>; subscriptions use a
WebSocket to <code>/graphql</code> with the <code>graphql-transport-ws</code> subprotocol.</p>
</body>
</html>
"""


def render(assets: Assets) -> str:
    """The page, with each file's URL and integrity; ``AssetsUnavailable`` if one is
    not installed."""
    links = "\n  ".join(
        f'<link rel="stylesheet" href="{assets.url(n)}" integrity="{assets.get(n).integrity}" '
        'onerror="tickgraphAssetFailed(this)">'
        for n in STYLESHEETS
    )
    scripts = "\n  ".join(
        f'<script src="{assets.url(n)}" integrity="{assets.get(n).integrity}" '
        'onerror="tickgraphAssetFailed(this)"></script>'
        for n in SCRIPTS
    )
    # JSON inside <script>: "<" escaped so the text can never close the element.
    query = json.dumps(DEFAULT_QUERY).replace("<", "\\u003c")
    return (
        _TEMPLATE.replace("<!-- tickgraph:stylesheets -->", links)
        .replace("<!-- tickgraph:scripts -->", scripts)
        .replace("<!-- tickgraph:default-query -->", query)
    )


def render_missing(problem: AssetsUnavailable) -> str:
    command = html.escape(FIX_COMMAND)
    hint = (
        html.escape(FIX_HINT)
        .replace("./dev serve", "<code>./dev serve</code>")
        .replace(command, f"<code>{command}</code>")
    )
    return _MISSING.replace("<!-- reason -->", html.escape(str(problem))).replace(
        "<!-- hint -->", hint
    )


def page(assets: Assets | AssetsUnavailable) -> tuple[str, AssetsUnavailable | None]:
    """The page to serve, and the problem if GraphiQL cannot work."""
    if isinstance(assets, AssetsUnavailable):
        return render_missing(assets), assets
    try:
        return render(assets), None
    except AssetsUnavailable as problem:
        return render_missing(problem), problem
