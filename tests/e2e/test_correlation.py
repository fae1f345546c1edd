"""Correlation ids on a real server: one per HTTP request and one per WebSocket
connection, sent back in ``X-Request-ID``, on every log line written for it, and in the
masked INTERNAL error the client sees, so a user's report leads to the log."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import orjson

from server.logging_setup import JsonFormatter, RedactingFormatter
from server.observability.correlation import CorrelationFilter
from streams.polygon_server import start_simulated_server
from tests.e2e.conftest import SettingsFactory
from tests.support.graphql_ws import graphql_ws
from tests.support.server import running_server

QUERY = "{ feedStatus { state } }"


@contextmanager
def json_log() -> Iterator[io.StringIO]:
    """The server's log as production writes it (the filter and formatters of
    ``server.logging_setup.configure``), into a buffer."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(RedactingFormatter(JsonFormatter()))
    handler.addFilter(CorrelationFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield out
    finally:
        root.removeHandler(handler)


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]


def internal(errors: list[dict[str, Any]]) -> dict[str, Any]:
    (error,) = errors
    assert error["extensions"]["code"] == "INTERNAL", error
    extensions: dict[str, Any] = error["extensions"]
    return extensions


async def test_ids_reach_the_log_and_the_masked_error(make_settings: SettingsFactory) -> None:
    async with await start_simulated_server(["AMZN"], seed=3, rate=20.0) as upstream:
        settings = make_settings(upstream, symbols=("AMZN",))
        async with running_server(settings) as srv:
            tracker = srv.runtime.services.feed_status

            def broken() -> Any:
                raise RuntimeError("feed status exploded")

            with json_log() as out:
                # A bug behind one field: the client sees INTERNAL, the log the traceback.
                tracker.snapshot = broken  # type: ignore[method-assign]
                try:
                    async with httpx.AsyncClient(base_url=srv.http) as http:
                        first = await http.post("/graphql", json={"query": QUERY})
                        second = await http.post("/graphql", json={"query": QUERY})
                        healthy = await http.get("/healthz")
                    async with (
                        graphql_ws(srv.ws) as one,
                        graphql_ws(srv.ws) as other,
                    ):
                        ws_ids = [
                            c.ws.response.headers["x-request-id"]  # type: ignore[union-attr]
                            for c in (one, other)
                        ]
                        ws_errors = []
                        for client in (one, one, other):
                            op = await client.subscribe(QUERY)
                            msg = await client.recv()
                            assert msg["id"] == op and msg["type"] == "next", msg
                            ws_errors.append(internal(msg["payload"]["errors"]))
                            assert await client.recv() == {"id": op, "type": "complete"}
                finally:
                    del tracker.snapshot  # type: ignore[method-assign]
            logged = lines(out)

    http_ids = [r.headers["x-request-id"] for r in (first, second, healthy)]
    assert len(set(http_ids)) == 3 and all(len(i) == 24 for i in http_ids)
    assert len(set(ws_ids)) == 2 and not set(ws_ids) & set(http_ids)

    # Each masked error names its request's or connection's id.
    for response, cid in zip((first, second), http_ids[:2], strict=True):
        assert internal(response.json()["errors"])["correlationId"] == cid
    assert [e["correlationId"] for e in ws_errors] == [ws_ids[0], ws_ids[0], ws_ids[1]]

    # ... and the log line of each error carries the same id and reference.
    failures = [line for line in logged if line["msg"].startswith("unexpected error")]
    assert len(failures) == 5, failures
    errors = [internal(first.json()["errors"]), internal(second.json()["errors"]), *ws_errors]
    assert sorted((f["cid"], f["reference"]) for f in failures) == sorted(
        (e["correlationId"], e["reference"]) for e in errors
    )
    assert all("feed status exploded" in f["exc"] for f in failures)
