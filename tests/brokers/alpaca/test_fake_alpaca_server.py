"""The fake Alpaca server as a server: the sockets it serves on, and its outages."""

from __future__ import annotations

import socket

from alpaca.trading.client import TradingClient

from tests.brokers.alpaca.conftest import call
from tests.support.fake_alpaca import FakeAlpaca


def nodelay_flags(fake: FakeAlpaca) -> list[int]:
    assert fake._server is not None
    return [
        c.transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        for c in fake._server.server_state.connections
    ]


async def test_answers_are_not_held_back_by_nagle(fake: FakeAlpaca, client: TradingClient) -> None:
    """Every accepted connection has TCP_NODELAY: uvicorn writes an answer's headers and
    body separately, and with Nagle on the body waits ~40 ms for the client's delayed
    ACK, which would add that much to every request a latency figure is taken from."""
    await call(client.get_account)
    flags = nodelay_flags(fake)
    assert flags and all(flags)


async def test_an_outage_comes_back_on_the_same_port_with_the_same_state(
    fake: FakeAlpaca, client: TradingClient
) -> None:
    before = fake.base_url
    fake.account.cash -= 1
    async with fake.outage():
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", int(before.rsplit(":", 1)[1]))) != 0
    assert fake.base_url == before
    assert (await call(client.get_account)).cash == "99999"
