"""The page served instead of GraphiQL or the board when their front-end files are not
installed: what is missing and the one command that fixes it, instead of a blank page."""

from __future__ import annotations

import html

from server.web.assets import FIX_COMMAND, FIX_HINT, AssetsUnavailable

_TEMPLATE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>tickgraph · <!-- what --> unavailable</title>
<meta name="robots" content="noindex">
<style>body { font-family: system-ui, sans-serif; max-width: 46rem; margin: 3rem auto;
padding: 0 1rem; line-height: 1.5; } code { background: #f2f2f2; padding: 0 .25rem; }</style>
</head>
<body>
<h1><!-- what --> is not installed on this server</h1>
<p>tickgraph serves <!-- what --> from pinned npm packages that are installed at set-up
time, and they are not there: <!-- reason -->.</p>
<p>To fix it, <!-- hint -->, then restart the server.</p>
<p>The API itself works: POST queries to <code>/graphql</code>; subscriptions use a
WebSocket to <code>/graphql</code> with the <code>graphql-transport-ws</code> subprotocol.</p>
</body>
</html>
"""


def render_missing(what: str, problem: AssetsUnavailable) -> str:
    command = html.escape(FIX_COMMAND)
    hint = (
        html.escape(FIX_HINT)
        .replace("./dev serve", "<code>./dev serve</code>")
        .replace(command, f"<code>{command}</code>")
    )
    return (
        _TEMPLATE.replace("<!-- what -->", html.escape(what))
        .replace("<!-- reason -->", html.escape(str(problem)))
        .replace("<!-- hint -->", hint)
    )
