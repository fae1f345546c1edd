"""The faults of issue 15, each seen through the real alpaca-py client: a submit that
times out but landed, a 5xx then success, alpaca-py's own retry of a 504 that landed,
a reset connection, a duplicate client order id, a 429 storm, a broker rejection, a
client that dies between submit and record, and Alpaca down altogether.

These pin down what alpaca-py does, which the adapter is built around: it has no
timeout (a held answer blocks its thread until the server lets go), raises ``requests``
exceptions unwrapped for network failures, and retries 429 and 504 (POSTs included)
three times, 3 s apart, without reading ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import functools

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderStatus
from alpaca.trading.models import Order
from alpaca.trading.requests import LimitOrderRequest

from tests.brokers.alpaca.conftest import (
    StreamRecorder,
    api_error,
    call,
    limit_order,
    trading_client,
)
from tests.support.fake_alpaca import FakeAlpaca, Fault
from tests.support.timing import TIMEOUT

#: The adapter's own deadline for a call. Small: the fake holds its answer far longer.
CLIENT_TIMEOUT = 0.3
SUBMIT = ("POST", "/v2/orders")


def order_request(client_order_id: str | None = "cid-1") -> LimitOrderRequest:
    return limit_order(189, client_order_id=client_order_id)


async def lookup(fake: FakeAlpaca, client_order_id: str = "cid-1") -> Order | None:
    """What the adapter does after a failed submit: ask Alpaca by client order id (on a
    fresh client: the first one's thread may still be blocked)."""
    try:
        return await call(trading_client(fake).get_order_by_client_id, client_order_id)
    except APIError as error:
        if error.status_code == 404:
            return None
        raise


async def test_a_submit_that_times_out_but_landed(fake: FakeAlpaca, client: TradingClient) -> None:
    fake.inject(Fault.hold(TIMEOUT * 3).on(*SUBMIT))
    submit = asyncio.ensure_future(call(client.submit_order, order_request()))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(submit), CLIENT_TIMEOUT)
    assert not submit.done()  # alpaca-py has no timeout: its thread is still waiting

    found = await lookup(fake)
    assert found is not None and found.status == OrderStatus.NEW
    assert len(fake.submissions("cid-1")) == 1

    fake.release_held()
    late: Order = await asyncio.wait_for(submit, TIMEOUT)
    assert late.id == found.id


async def test_a_socket_timeout_frees_the_thread(fake: FakeAlpaca, client: TradingClient) -> None:
    """alpaca-py passes no timeout to ``requests``; one set on its session ends the call
    with ``requests.exceptions.ReadTimeout`` (not an ``APIError``)."""
    session = client._session
    session.request = functools.partial(session.request, timeout=CLIENT_TIMEOUT)  # type: ignore[method-assign]
    fake.inject(Fault.hold(TIMEOUT * 3).on(*SUBMIT))
    with pytest.raises(requests.exceptions.ReadTimeout):
        await call(client.submit_order, order_request())
    assert await lookup(fake) is not None


async def test_a_submit_still_in_flight_is_not_found_yet(
    fake: FakeAlpaca, client: TradingClient
) -> None:
    """The lookup can come before the order lands: "not found" is not "not placed".
    Resubmitting with the same client order id is what makes that safe: whichever copy
    lands second is refused as a duplicate, so there is one order either way."""
    fake.inject(Fault.hold(TIMEOUT * 3, landed=False).on(*SUBMIT))
    first = asyncio.ensure_future(call(client.submit_order, order_request()))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(first), CLIENT_TIMEOUT)
    assert await lookup(fake) is None

    again = await call(trading_client(fake).submit_order, order_request())
    fake.release_held()
    with pytest.raises(APIError) as exc:
        await asyncio.wait_for(first, TIMEOUT)
    assert (exc.value.status_code, exc.value.message) == (422, "client_order_id must be unique")
    assert [o.id for o in fake.account.orders.values()] == [str(again.id)]
    assert len(fake.submissions("cid-1")) == 2


@pytest.mark.parametrize("landed", [False, True], ids=["before-landing", "after-landing"])
async def test_a_5xx_then_success(fake: FakeAlpaca, client: TradingClient, landed: bool) -> None:
    fake.inject(Fault.server_error(503 if not landed else 500, landed=landed).on(*SUBMIT))
    with pytest.raises(APIError) as exc:
        await call(client.submit_order, order_request())
    assert exc.value.status_code == (500 if landed else 503)  # not retried by alpaca-py
    assert len(fake.submissions()) == 1

    found = await lookup(fake)
    assert (found is not None) == landed
    if found is None:
        placed = await call(client.submit_order, order_request())
        assert placed.client_order_id == "cid-1"
    assert len(fake.account.orders) == 1


async def test_alpaca_py_retries_a_504_that_landed_into_a_duplicate(fake: FakeAlpaca) -> None:
    """alpaca-py retries a POST answered 504 by itself. When the first attempt had
    landed, the retry is refused as a duplicate client order id, and that 422 is all
    the caller sees, for an order that exists."""
    client = trading_client(fake, retry_wait_s=0.01)
    fake.inject(Fault.gateway_timeout(landed=True).on(*SUBMIT))
    with pytest.raises(APIError) as exc:
        await call(client.submit_order, order_request())
    assert (exc.value.status_code, exc.value.code) == (422, 40010001)
    assert len(fake.submissions("cid-1")) == 2
    assert len(fake.account.orders) == 1
    assert await lookup(fake) is not None


async def test_without_a_client_order_id_that_retry_places_a_second_order(
    fake: FakeAlpaca,
) -> None:
    client = trading_client(fake, retry_wait_s=0.01)
    fake.inject(Fault.gateway_timeout(landed=True).on(*SUBMIT))
    placed = await call(client.submit_order, order_request(client_order_id=None))
    assert len(fake.account.orders) == 2  # one of which the caller never heard of
    assert placed.id in {o.id for o in await call(client.get_orders)}


async def test_a_504_with_html_has_no_code(fake: FakeAlpaca) -> None:
    """The load balancer's 504 is HTML: ``APIError.code`` cannot parse it."""
    client = trading_client(fake, retry_wait_s=0.01)
    fake.inject(*[Fault.gateway_timeout(landed=False).on("GET", "/v2/account")] * 4)
    with pytest.raises(APIError) as exc:
        await call(client.get_account)
    assert exc.value.status_code == 504
    with pytest.raises(ValueError):
        _ = exc.value.code
    assert len(fake.requests) == 4  # the first try and alpaca-py's three retries


async def test_a_connection_reset_after_the_order_landed(
    fake: FakeAlpaca, client: TradingClient
) -> None:
    fake.inject(Fault.connection_reset(landed=True).on(*SUBMIT))
    with pytest.raises(requests.exceptions.ConnectionError):
        await call(client.submit_order, order_request())
    found = await lookup(fake)
    assert found is not None and found.status == OrderStatus.NEW
    assert fake.requests[0].status is None  # no answer was ever sent


async def test_a_429_storm(fake: FakeAlpaca) -> None:
    fake.rate_limiter.limit = 3
    # TradingClient takes no retry settings; without alpaca-py's own retries a 429
    # reaches the caller at once, with Alpaca's headers.
    client = trading_client(fake)
    client._retry = 0
    for _ in range(3):
        await call(client.get_account)
    with pytest.raises(APIError) as exc:
        await call(client.get_account)
    assert api_error(exc.value) == (429, 42910000, "rate limit exceeded")
    headers = exc.value.response.headers
    assert headers["X-Ratelimit-Limit"] == "3" and headers["X-Ratelimit-Remaining"] == "0"
    assert 1 <= int(headers["Retry-After"]) <= 60
    assert int(headers["X-Ratelimit-Reset"]) > 0

    # alpaca-py's default: three more tries at a fixed pause, Retry-After unread, then
    # the same 429. The retries spend requests against the same limit.
    retrying = trading_client(fake, retry_wait_s=0.01)
    before = len(fake.requests)
    with pytest.raises(APIError) as exc:
        await call(retrying.get_account)
    assert exc.value.status_code == 429
    assert len(fake.requests) - before == 4

    fake.rate_limiter.reset()
    assert (await call(client.get_account)).cash == "100000"


async def test_a_429_is_retried_for_a_post_too(fake: FakeAlpaca) -> None:
    client = trading_client(fake, retry_wait_s=0.01)
    fake.inject(Fault.rate_limited(retry_after_s=5).on(*SUBMIT), Fault.rate_limited().on(*SUBMIT))
    placed = await call(client.submit_order, order_request())
    assert placed.client_order_id == "cid-1"
    assert [r.status for r in fake.submissions("cid-1")] == [429, 429, 200]


async def test_an_order_rejected_by_the_broker(fake: FakeAlpaca, client: TradingClient) -> None:
    fake.reject_next("insufficient liquidity")
    placed = await call(client.submit_order, order_request())
    assert placed.status == OrderStatus.PENDING_NEW  # taken; the venue said no after
    rejected = await call(client.get_order_by_id, placed.id)
    assert rejected.status == OrderStatus.REJECTED and rejected.failed_at is not None
    assert fake.order(str(placed.id)).reject_reason == "insufficient liquidity"
    assert fake.account.event_names() == ["pending_new", "rejected"]
    account = await call(client.get_account)
    assert account.buying_power == "200000"  # a rejected order holds nothing


async def test_a_client_killed_between_submit_and_record(fake: FakeAlpaca) -> None:
    """The process dies after the POST left and before its answer was recorded (here,
    its connection is reset after the order landed); the order fills meanwhile. A new
    process, with a new client, finds all of it on Alpaca by client order id."""
    doomed = trading_client(fake)
    fake.inject(Fault.connection_reset(landed=True).on(*SUBMIT))
    with pytest.raises(requests.exceptions.ConnectionError):
        await call(doomed.submit_order, order_request())
    fake.fill(fake.order_by_client_id("cid-1").id, "188.75")

    restarted = trading_client(fake)
    order = await call(restarted.get_order_by_client_id, "cid-1")
    assert (order.status, order.filled_qty, order.filled_avg_price) == (
        OrderStatus.FILLED,
        "10",
        "188.75",
    )
    fills = await call(restarted.get, "/account/activities/FILL")
    assert [(f["order_id"], f["qty"], f["price"]) for f in fills] == [
        (str(order.id), "10", "188.75")
    ]
    position = await call(restarted.get_open_position, "AAPL")
    assert position.qty == "10"


async def test_alpaca_down_and_back(fake: FakeAlpaca, client: TradingClient) -> None:
    recorder = await StreamRecorder(fake).start()
    try:
        placed = await call(client.submit_order, order_request())
        connections = fake.stream_connections_total
        async with fake.outage():
            with pytest.raises(requests.exceptions.ConnectionError):
                await call(trading_client(fake).get_account)
            fake.fill(placed.id, "189")  # the venue keeps trading
        await fake.wait_for_listeners()  # the stream came back by itself
        assert fake.stream_connections_total > connections
        order = await call(trading_client(fake).get_order_by_id, placed.id)
        assert order.status == OrderStatus.FILLED
        events = [u.event for u in recorder.pending()]
        assert "fill" not in events  # emitted while nobody could listen
    finally:
        await recorder.stop()
