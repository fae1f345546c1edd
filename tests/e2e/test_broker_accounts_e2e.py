"""Users' own Alpaca accounts through the real server: link (checked with Alpaca, sealed
at rest), trade there while others trade on paper, unlink (the stream stops, the secret
is gone), and the secret nowhere: not in any log line of a DEBUG run, any answer or
error, or the database in clear."""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from server.logging_setup import configure
from server.settings import Secret
from streams.polygon_server import PolygonProtocolServer, start_simulated_server
from tests.e2e.conftest import SettingsFactory
from tests.e2e.test_orders_e2e import PLACE, code, gql, limit, quoted, trader
from tests.support.fake_alpaca import FakeAlpaca
from tests.support.server import running_server
from tests.support.timing import TIMEOUT

USER_KEY = "PKUSER1234567890ABCD"
USER_SECRET = "user-secret-Zq8v3Kx1Lm9Np2Rt7Wy4"
WRONG_SECRET = "wrong-secret-Hh5Jj6Kk7Ll8Mm9Nn0"
LINK = """mutation($k: String!, $s: String!, $live: Boolean! = false) {
  linkBrokerAccount(input: {keyId: $k, secret: $s, live: $live}) {
    broker keyIdHint live linkedAt } }"""
STATUS = "{ brokerAccount { broker keyIdHint live corrections { what detail } } }"


@pytest.fixture
async def upstream() -> AsyncIterator[PolygonProtocolServer]:
    async with await start_simulated_server(["AMZN", "MSFT"], seed=12, rate=100.0) as up:
        yield up


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    """The server's own logging set up at DEBUG, plus a raw copy of every line (no
    redaction) to grep."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure("DEBUG", json=False)
    raw = io.StringIO()
    handler = logging.StreamHandler(raw)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    root.addHandler(handler)
    try:
        yield raw
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


async def test_a_linked_account_trades_at_alpaca_and_its_secret_is_nowhere(
    make_settings: SettingsFactory, upstream: PolygonProtocolServer, debug_log: io.StringIO
) -> None:
    answers: list[str] = []

    async def call(http: httpx.AsyncClient, query: str, token: str, **v: Any) -> dict[str, Any]:
        body = await gql(http, query, token, **v)
        answers.append(repr(body))
        return body

    async with FakeAlpaca() as fake:
        account = fake.add_account(USER_KEY, USER_SECRET, cash="25000")
        settings = make_settings(
            upstream,
            symbols=("AMZN", "MSFT"),
            trading_calendar="continuous",
            log_level="DEBUG",
            secrets_key=Secret(base64.b64encode(os.urandom(32)).decode()),
            alpaca_base_url=fake.base_url,
        )
        async with (
            running_server(settings) as server,
            httpx.AsyncClient(base_url=server.http, timeout=30) as http,
        ):
            alice, bob = await trader(http, server), await trader(http, server)
            last = await quoted(server)
            far = str(last * 95 // 100)
            assert (await call(http, STATUS, alice))["data"]["brokerAccount"] is None

            refused = await call(http, LINK, alice, k=USER_KEY, s=WRONG_SECRET)
            assert code(refused) == "BROKER_AUTH_FAILED"
            bad = await call(http, LINK, alice, k="not a key", s=USER_SECRET)
            assert code(bad) == "BAD_USER_INPUT"

            linked = await call(http, LINK, alice, k=USER_KEY, s=USER_SECRET)
            assert linked["data"]["linkBrokerAccount"]["broker"] == "alpaca"
            assert linked["data"]["linkBrokerAccount"]["live"] is False
            assert linked["data"]["linkBrokerAccount"]["keyIdHint"] == "PKUS…"
            await fake.wait_for_listeners(1, account)

            # Alice trades at her Alpaca account, Bob with the paper broker.
            mine = await call(http, PLACE, alice, input=limit("BUY", "2", far))
            assert "errors" not in mine, mine
            order_id = mine["data"]["placeOrder"]["id"]
            assert fake.order_by_client_id(order_id, account).qty == 2
            theirs = await call(http, PLACE, bob, input=limit("BUY", "1", far))
            assert not [o for o in fake.account.orders.values()]
            assert theirs["data"]["placeOrder"]["status"] == "NEW"
            started = await call(http, "{ account { startingCash } }", alice)
            assert started["data"]["account"]["startingCash"] == "25000"

            # Open orders hold the link in place.
            assert (
                code(await call(http, "mutation { unlinkBrokerAccount }", alice)) == "OPEN_ORDERS"
            )
            canceled = await call(
                http,
                "mutation($id: ID!) { cancelOrder(id: $id) { id status } }",
                alice,
                id=order_id,
            )
            pool = server.runtime.database.pool
            sealed = await pool.fetchval("SELECT secret_sealed FROM broker_accounts")
            assert USER_SECRET.encode() not in bytes(sealed)

            # Alpaca's answer comes on alice's stream (the server is not Alpaca's
            # operator: ``settled`` polls like for any Alpaca order).
            await _canceled(server, http, alice, canceled["data"]["cancelOrder"])
            gone = await call(http, "mutation { unlinkBrokerAccount }", alice)
            assert gone["data"]["unlinkBrokerAccount"] is True
            assert not account.listeners  # the stream stopped
            assert await pool.fetchval("SELECT count(*) FROM broker_accounts") == 0
            assert (await call(http, STATUS, alice))["data"]["brokerAccount"] is None

    text = debug_log.getvalue()
    assert "DEBUG" in text or len(text) > 1000  # the run did log at DEBUG
    for secret in (USER_SECRET, WRONG_SECRET):
        assert secret not in text
        assert all(secret not in answer for answer in answers)


async def _canceled(
    server: Any, http: httpx.AsyncClient, token: str, order: dict[str, Any]
) -> None:
    query = "query($id: ID!) { order(id: $id) { status } }"
    async with asyncio.timeout(TIMEOUT):
        while True:
            found = await gql(http, query, token, id=order["id"])
            if found["data"]["order"]["status"] == "CANCELED":
                return
            await asyncio.sleep(0.02)


async def test_linking_is_refused_without_a_secrets_key(
    make_settings: SettingsFactory, upstream: PolygonProtocolServer
) -> None:
    settings = make_settings(upstream, symbols=("AMZN",), trading_calendar="continuous")
    async with running_server(settings) as server, httpx.AsyncClient(base_url=server.http) as http:
        alice = await trader(http, server)
        body = await gql(http, LINK, alice, k=USER_KEY, s=USER_SECRET)
        assert code(body) == "LINKING_DISABLED"
        assert USER_SECRET not in repr(body)
