"""The GraphiQL page at ``/graphql``, built once at start-up from the installed files.

When the files are missing or fail their hash check, the page says so and how to fix
it, instead of leaving a browser at "Loading GraphiQL…".
"""

from __future__ import annotations

import json
from pathlib import Path

from server.web.assets import Assets, AssetsUnavailable
from server.web.missing import render_missing

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


def page(assets: Assets | AssetsUnavailable) -> tuple[str, AssetsUnavailable | None]:
    """The page to serve, and the problem if GraphiQL cannot work."""
    if isinstance(assets, AssetsUnavailable):
        return render_missing("GraphiQL", assets), assets
    try:
        return render(assets), None
    except AssetsUnavailable as problem:
        return render_missing("GraphiQL", problem), problem
