"""The ``trade_updates`` stream of the fake Alpaca server, through alpaca-py's real
``TradingStream`` and on the wire: the handshake, the frames, the order of updates,
and a drop during which updates are lost for good, as with Alpaca."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgpack
import pytest
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderStatus
from alpaca.trading.models import Order
from alpaca.trading.requests import GetOrdersRequest, QueryOrderStatus
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.brokers.alpaca.conftest import StreamRecorder, call, event_name, limit_order
from tests.support.fake_alpaca import DEFAULT_KEY_ID, FakeAlpaca
from tests.support.timing import TIMEOUT


async def place(client: TradingClient, limit: str = "189", qty: int = 10) -> Order:
    return await call(client.submit_order, limit_order(float(limit), qty))


async def test_updates_arrive_in_order_with_their_fill_details(
    fake: FakeAlpaca, client: TradingClient, recorder: StreamRecorder
) -> None:
    first = await place(client)
    fake.partial_fill(first.id, "4", "188.5")
    fake.fill(first.id, "189")
    second = await place(client, "180")
    await call(client.cancel_order_by_id, second.id)

    a, b = str(first.id), str(second.id)
    assert await recorder.events(8) == [
        ("pending_new", a),
        ("new", a),
        ("partial_fill", a),
        ("fill", a),
        ("pending_new", b),
        ("new", b),
        ("pending_cancel", b),
        ("canceled", b),
    ]
    fills = [m["data"] for m in fake.account.events if m["data"]["event"].endswith("fill")]
    assert [(f["price"], f["qty"], f["position_qty"]) for f in fills] == [
        ("188.5", "4", "4"),  # strings on the wire; alpaca-py turns them into floats
        ("189", "6", "10"),
    ]
    assert fills[1]["order"]["status"] == "filled" and fills[1]["order"]["filled_qty"] == "10"
    assert len({m["data"]["execution_id"] for m in fake.account.events}) == 8


async def test_alpaca_py_parses_every_update(
    fake: FakeAlpaca, client: TradingClient, recorder: StreamRecorder
) -> None:
    order = await place(client)
    fake.done_for_day(order.id)
    fake.set_status(order.id, "suspended")
    fake.expire(order.id)
    rejected_next = "no liquidity"
    fake.reject_next(rejected_next)
    refused = await place(client)
    updates = [await recorder.next() for _ in range(7)]
    assert [(event_name(u), str(u.order.id)) for u in updates] == [
        ("pending_new", str(order.id)),
        ("new", str(order.id)),
        ("done_for_day", str(order.id)),
        ("suspended", str(order.id)),
        ("expired", str(order.id)),
        ("pending_new", str(refused.id)),
        ("rejected", str(refused.id)),
    ]
    assert updates[4].order.expired_at is not None
    assert updates[6].order.status == OrderStatus.REJECTED
    assert updates[6].order.failed_at is not None
    assert all(u.execution_id is not None and u.timestamp.tzinfo for u in updates)


async def test_a_dropped_stream_loses_what_happened_meanwhile(
    fake: FakeAlpaca, client: TradingClient, recorder: StreamRecorder
) -> None:
    order = await place(client)
    assert await recorder.events(2) == [("pending_new", str(order.id)), ("new", str(order.id))]

    with fake.stream_outage():  # the connection is reset; reconnects get 503
        fake.partial_fill(order.id, "4", "188")
        fake.fill(order.id, "189")
    await fake.wait_for_listeners()  # alpaca-py reconnected by itself
    assert fake.stream_connections_total >= 2

    later = await place(client, "150")
    assert await recorder.events(2) == [("pending_new", str(later.id)), ("new", str(later.id))]
    assert recorder.pending() == []  # the fills were never delivered, nor replayed

    # What the stream missed is on REST: the order, and its fills for the ledger.
    closed = await call(client.get_orders, GetOrdersRequest(status=QueryOrderStatus.CLOSED))
    assert [(o.id, o.status, o.filled_qty) for o in closed] == [
        (order.id, OrderStatus.FILLED, "10")
    ]
    fills = await call(client.get, "/account/activities/FILL")
    assert [(f["order_id"], f["qty"]) for f in fills] == [
        (str(order.id), "6"),
        (str(order.id), "4"),
    ]


async def test_alpaca_py_retries_a_refused_authentication_forever(fake: FakeAlpaca) -> None:
    """A wrong secret is no reason for alpaca-py to stop: it reconnects with backoff
    (0.5-1 s, then doubling to 30 s) until told to stop."""
    recorder = StreamRecorder(fake, secret="wrong")
    await recorder.start(listening=False)
    async with asyncio.timeout(TIMEOUT):
        while True:
            if fake.stream_connections_total >= 2:
                break
            await asyncio.sleep(0.05)
    await recorder.stop()
    assert fake.account.listeners == set()


# --- the wire ---------------------------------------------------------------------------


async def receive(ws: ClientConnection) -> tuple[bool, dict[str, Any]]:
    """(was it a binary frame, the message)."""
    frame = await asyncio.wait_for(ws.recv(), TIMEOUT)
    return isinstance(frame, bytes), json.loads(frame)


async def test_the_handshake_and_binary_frames(fake: FakeAlpaca, client: TradingClient) -> None:
    async with connect(fake.stream_url) as ws:
        await ws.send(json.dumps({"action": "auth", "key": fake.key_id, "secret": fake.secret}))
        assert await receive(ws) == (
            True,
            {"stream": "authorization", "data": {"status": "authorized", "action": "authenticate"}},
        )
        await ws.send(
            json.dumps(
                {"action": "listen", "data": {"streams": ["trade_updates", "account_updates"]}}
            )
        )
        assert await receive(ws) == (
            True,
            {"stream": "listening", "data": {"streams": ["trade_updates"]}},
        )
        first = await place(client)
        binary, update = await receive(ws)
        assert binary and update["stream"] == "trade_updates"
        assert update["data"]["event"] == "pending_new"
        assert update["data"]["order"]["id"] == str(first.id)
        assert set(update["data"]) == {"event", "execution_id", "order", "timestamp"}
        assert (await receive(ws))[1]["data"]["event"] == "new"

        # An empty list stops the updates; listening again starts them with what comes
        # next, and nothing from the time between.
        await ws.send(json.dumps({"action": "listen", "data": {"streams": []}}))
        assert (await receive(ws))[1] == {"stream": "listening", "data": {"streams": []}}
        await place(client)
        await ws.send(json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
        assert (await receive(ws))[1]["stream"] == "listening"
        third = await place(client)
        assert (await receive(ws))[1]["data"]["order"]["id"] == str(third.id)


async def test_text_frames_and_the_authenticate_form(fake: FakeAlpaca) -> None:
    fake.binary_frames = False
    async with connect(fake.stream_url) as ws:
        await ws.send(
            json.dumps(
                {
                    "action": "authenticate",
                    "data": {"key_id": fake.key_id, "secret_key": fake.secret},
                }
            )
        )
        binary, message = await receive(ws)
        assert not binary and message["data"]["status"] == "authorized"


async def test_msgpack_on_request(fake: FakeAlpaca, client: TradingClient) -> None:
    headers = {"Content-Type": "application/msgpack"}
    async with connect(fake.stream_url, additional_headers=headers) as ws:
        await ws.send(msgpack.packb({"action": "auth", "key": fake.key_id, "secret": fake.secret}))
        reply = msgpack.unpackb(await asyncio.wait_for(ws.recv(), TIMEOUT))
        assert reply["data"]["status"] == "authorized"
        await ws.send(msgpack.packb({"action": "listen", "data": {"streams": ["trade_updates"]}}))
        assert msgpack.unpackb(await ws.recv())["stream"] == "listening"
        order = await place(client)
        update = msgpack.unpackb(await asyncio.wait_for(ws.recv(), TIMEOUT))
        assert update["data"]["order"]["id"] == str(order.id)


@pytest.mark.parametrize(
    "first",
    [
        {"action": "auth", "key": DEFAULT_KEY_ID, "secret": "wrong"},
        {"action": "auth", "key": "nobody", "secret": "x"},
        {"action": "authenticate", "data": {"key_id": DEFAULT_KEY_ID}},
        {"action": "listen", "data": {"streams": ["trade_updates"]}},
    ],
)
async def test_unauthorized_connections_are_told_and_closed(
    fake: FakeAlpaca, first: dict[str, Any]
) -> None:
    async with connect(fake.stream_url) as ws:
        await ws.send(json.dumps(first))
        _, message = await receive(ws)
        action = "listen" if first["action"] == "listen" else "authenticate"
        assert message == {
            "stream": "authorization",
            "data": {"status": "unauthorized", "action": action},
        }
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert fake.account.listeners == set()


async def test_raw_data_keeps_fill_prices_decimal(fake: FakeAlpaca, client: TradingClient) -> None:
    """alpaca-py's ``TradeUpdate`` makes ``price``, ``qty`` and ``position_qty`` floats;
    with ``raw_data=True`` the handler gets Alpaca's message, decimal strings intact."""
    recorder = await StreamRecorder(fake, raw_data=True).start()
    try:
        order = await place(client, qty=3)
        fake.fill(order.id, "188.1")
        messages = [await recorder.next() for _ in range(3)]
        assert messages[2]["stream"] == "trade_updates"
        fill = messages[2]["data"]
        assert (fill["event"], fill["price"], fill["qty"], fill["position_qty"]) == (
            "fill",
            "188.1",
            "3",
            "3",
        )
        assert fill["order"]["filled_avg_price"] == "188.1"
    finally:
        await recorder.stop()
