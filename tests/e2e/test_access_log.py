"""The access log of a real server: one line per request with method, path, status,
duration and correlation id; probes only when asked; a trusted proxy's X-Request-ID as
the parent id, anyone else's ignored."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from server.observability.access_log import ACCESS_LOGGER
from server.observability.correlation import CorrelationFilter
from server.settings import Settings
from tests.support.graphql_ws import graphql_ws
from tests.support.postgres import settings_for
from tests.support.server import running_server


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.addFilter(CorrelationFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def access_lines() -> Iterator[list[logging.LogRecord]]:
    logger = logging.getLogger(ACCESS_LOGGER)
    handler = _Lines()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def base(url: str, tmp_path: Path, **overrides: object) -> Settings:
    return settings_for(url, tmp_path, symbols=("AAPL",), **overrides)


async def test_one_line_per_request_with_its_correlation_id(
    fresh_database_url: str, tmp_path: Path
) -> None:
    with access_lines() as lines:
        async with running_server(base(fresh_database_url, tmp_path)) as server:
            async with httpx.AsyncClient(base_url=server.http) as http:
                ok = await http.post(
                    "/graphql?token=never-logged",
                    json={"query": "{ __typename }"},
                    headers={"x-request-id": "from-a-stranger"},
                )
                missing = await http.get("/nowhere")
                await http.get("/healthz")
                await http.get("/metrics")
            async with graphql_ws(server.ws) as client:
                await client.subscribe("{ __typename }")
                await client.recv()
    by_path = {r.path: r for r in lines}
    assert set(by_path) == {"/graphql", "/nowhere"}, [r.getMessage() for r in lines]
    post = next(r for r in lines if r.method == "POST")
    assert (post.status, post.cid) == (200, ok.headers["x-request-id"])
    assert post.getMessage().startswith("POST /graphql 200 ")
    assert post.getMessage().endswith("ms") and post.duration_ms >= 0
    assert not hasattr(post, "parent")  # the header came from no trusted proxy
    assert "never-logged" not in post.getMessage()
    assert by_path["/nowhere"].status == 404
    assert by_path["/nowhere"].cid == missing.headers["x-request-id"]
    socket = [r for r in lines if r.method == "WS"]
    assert [r.status for r in socket] == [101]


async def test_a_trusted_proxy_gives_the_parent_id_and_the_client(
    fresh_database_url: str, tmp_path: Path
) -> None:
    settings = base(
        fresh_database_url,
        tmp_path,
        trusted_proxies=("127.0.0.0/8",),
        access_log_probes=True,
    )
    with access_lines() as lines:
        async with running_server(settings) as server:
            async with httpx.AsyncClient(base_url=server.http) as http:
                answer = await http.get(
                    "/healthz",
                    headers={"x-request-id": "lb-1234", "x-forwarded-for": "203.0.113.9"},
                )
                await http.get("/healthz", headers={"x-request-id": "bad id with spaces"})
    first, second = lines
    assert (first.parent, first.client, first.path) == ("lb-1234", "203.0.113.9", "/healthz")
    assert first.cid == answer.headers["x-request-id"] != "lb-1234"
    assert not hasattr(second, "parent")


async def test_off_by_setting(fresh_database_url: str, tmp_path: Path) -> None:
    settings = dataclasses.replace(base(fresh_database_url, tmp_path), access_log=False)
    with access_lines() as lines:
        async with running_server(settings) as server:
            async with httpx.AsyncClient(base_url=server.http) as http:
                await http.get("/nowhere")
    assert lines == []
