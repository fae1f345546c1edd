"""The Alpaca adapter against the fake Alpaca's faults: nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from brokers.alpaca import AlpacaConfig, Pacing, RestConfig
from server.trading.events import OrderEvent, Reason
from server.trading.model import OrderType
from server.trading.states import EventKind, OrderStatus
from tests.brokers.alpaca.adapter_support import FAST, alpaca_broker, order
from tests.support.fake_alpaca import FakeAlpaca, Fault
from tests.support.timing import TIMEOUT

K = EventKind


async def test_a_submit_that_times_out_but_landed_is_found_by_client_order_id(
    fake: FakeAlpaca,
) -> None:
    fake.inject(Fault.hold(TIMEOUT, landed=True).on("POST", "/v2/orders"))
    async with alpaca_broker(fake) as (broker, got):
        o = order()
        await asyncio.wait_for(broker.submit([o]), TIMEOUT)
        assert K.NEW in got.kinds(o.id)
        assert len(fake.submissions(o.id)) == 1  # looked up, never sent again
        assert len(fake.account.orders) == 1


async def test_a_submit_held_until_after_the_lookup_lands_once(fake: FakeAlpaca) -> None:
    # The request lands late: the lookup finds nothing, the resubmission lands first,
    # and the late copy is refused as a duplicate. One order either way.
    fake.inject(Fault.hold(2.5, landed=False).on("POST", "/v2/orders"))
    async with alpaca_broker(fake) as (broker, got):
        o = order()
        await asyncio.wait_for(broker.submit([o]), TIMEOUT)
        await got.kind(o.id, K.NEW)
        fake.release_held()
        await asyncio.sleep(0.2)
        assert len(fake.account.orders) == 1
        assert got.kinds(o.id).count(K.NEW) == 1


async def test_a_5xx_then_success(fake: FakeAlpaca) -> None:
    fake.inject(Fault.server_error(500, landed=False).on("POST", "/v2/orders"))
    async with alpaca_broker(fake) as (broker, got):
        o = order()
        await asyncio.wait_for(broker.submit([o]), TIMEOUT)
        assert got.kinds(o.id)[0] is K.NEW
        assert len(fake.account.orders) == 1


async def test_a_504_after_landing_is_not_a_second_order(fake: FakeAlpaca) -> None:
    fake.inject(Fault.gateway_timeout(landed=True).on("POST", "/v2/orders"))
    async with alpaca_broker(fake) as (broker, got):
        o = order()
        await asyncio.wait_for(broker.submit([o]), TIMEOUT)
        assert got.kinds(o.id) == [K.NEW]
        assert len(fake.account.orders) == 1
        assert len(fake.submissions(o.id)) == 1


async def test_a_duplicate_client_order_id_is_already_there(fake: FakeAlpaca) -> None:
    async with alpaca_broker(fake) as (broker, got):
        o = order()
        await asyncio.wait_for(broker.submit([o]), TIMEOUT)
        # A second submit of the same id (another process re-issuing it) after the
        # first is done: Alpaca answers 422, which means "already there".
        broker.tracker.orders.clear()
        broker.tracker.by_alpaca_id.clear()
        await asyncio.wait_for(broker.submit([o]), TIMEOUT)
        assert len(fake.submissions(o.id)) == 2
        assert len(fake.account.orders) == 1
        assert K.REJECTED not in got.kinds(o.id)


async def test_an_order_rejected_by_the_broker(fake: FakeAlpaca) -> None:
    async with alpaca_broker(fake) as (broker, got):
        fake.reject_next("no shares available")
        venue = order()
        await asyncio.wait_for(broker.submit([venue]), TIMEOUT)
        assert (await got.kind(venue.id, K.REJECTED)).status is OrderStatus.REJECTED
        # Refused on the spot (403 insufficient buying power): rejected, with a reason.
        big = order("1000000")
        await asyncio.wait_for(broker.submit([big]), TIMEOUT)
        event = await got.kind(big.id, K.REJECTED)
        assert event.reason is Reason.BROKER_REJECTED
        assert len(fake.account.orders) == 1


async def test_a_stream_that_drops_with_fills_missed_is_reconciled(fake: FakeAlpaca) -> None:
    async with alpaca_broker(fake) as (broker, got):
        resting = order("10", type=OrderType.LIMIT, limit="190")
        canceled = order("5", type=OrderType.LIMIT, limit="180")
        await asyncio.wait_for(broker.submit([resting]), TIMEOUT)
        await asyncio.wait_for(broker.submit([canceled]), TIMEOUT)
        a = fake.order_by_client_id(resting.id)
        with fake.stream_outage():
            fake.partial_fill(a.id, "4", "189.50")
            fake.fill(a.id, "189.75")
            fake.cancel_by_venue(fake.order_by_client_id(canceled.id).id)
        await got.kind(resting.id, K.FILL)
        await got.kind(canceled.id, K.CANCELED)
        fills = [e.fill for e in got.events if e.order_id == resting.id and e.fill]
        assert [(f.qty, f.price) for f in fills] == [
            (Decimal(4), Decimal("189.50")),
            (Decimal(6), Decimal("189.75")),
        ]
        assert {c.order_id for c in got.corrections} == {resting.id, canceled.id}
        assert broker.reconciler.runs >= 2


async def test_a_fill_missed_between_two_stream_updates_is_read_from_the_activities(
    fake: FakeAlpaca,
) -> None:
    async with alpaca_broker(fake) as (broker, got):
        o = order("10", type=OrderType.LIMIT, limit="190")
        await asyncio.wait_for(broker.submit([o]), TIMEOUT)
        a = fake.order_by_client_id(o.id)
        listeners = set(fake.account.listeners)
        fake.account.listeners.clear()  # this one update is lost in transit
        fake.partial_fill(a.id, "3", "189")
        fake.account.listeners.update(listeners)
        fake.fill(a.id, "190")
        await got.kind(o.id, K.FILL)
        fills = [e.fill for e in got.events if e.order_id == o.id and e.fill]
        assert [f.qty for f in fills] == [Decimal(3), Decimal(7)]


async def test_a_429_storm_is_paced_by_retry_after_and_every_order_lands_once() -> None:
    async with FakeAlpaca() as fake:
        # Someone else spends the key's limit: 3 requests a second, then 429s.
        fake.rate_limiter.limit = 3
        fake.rate_limiter.window_s = 1.0
        fake.inject(*[Fault.rate_limited(1).on("POST", "/v2/orders") for _ in range(3)])
        async with alpaca_broker(fake, pacing=Pacing(limit=1000)) as (broker, got):
            orders = [order("1") for _ in range(6)]
            await asyncio.wait_for(
                asyncio.gather(*(broker.submit([o]) for o in orders)), 4 * TIMEOUT
            )
            for o in orders:
                assert got.kinds(o.id)[0] is K.NEW
                assert len(fake.submissions(o.id)) >= 1
            assert len(fake.account.orders) == 6
            assert broker.rest.pacing.throttled >= 3


async def test_our_pacing_keeps_under_the_limit(fake: FakeAlpaca) -> None:
    fake.rate_limiter.limit = 4
    fake.rate_limiter.window_s = 1.0
    config = AlpacaConfig(rest=RestConfig(connect_timeout_s=1, read_timeout_s=1))
    async with alpaca_broker(
        fake, config=config, pacing=Pacing(limit=3, window_s=1.25), start=False
    ) as (broker, _):
        orders = [order("1") for _ in range(8)]
        await asyncio.wait_for(asyncio.gather(*(broker.submit([o]) for o in orders)), 4 * TIMEOUT)
        assert all(r.status != 429 for r in fake.requests)
        assert len(fake.account.orders) == 8


async def test_a_restart_between_submit_and_record_is_healed_by_lookup(fake: FakeAlpaca) -> None:
    o = order()
    async with alpaca_broker(fake) as (broker, _):
        await asyncio.wait_for(broker.submit([o]), TIMEOUT)
    # The process died before recording the answer: its ledger has the order pending.
    fake.fill(fake.order_by_client_id(o.id).id, "190")
    async with alpaca_broker(fake, start=False) as (broker, got):
        await asyncio.wait_for(broker.resubmit([o]), TIMEOUT)
        broker.start()
        await got.kind(o.id, K.FILL)
        assert len(fake.submissions(o.id)) == 1
    # A restored open order, acknowledged before the crash, is brought up to date.
    p = order("3", type=OrderType.LIMIT, limit="190")
    async with alpaca_broker(fake) as (broker, _):
        await asyncio.wait_for(broker.submit([p]), TIMEOUT)
    fake.fill(fake.order_by_client_id(p.id).id, "189")
    async with alpaca_broker(fake, start=False) as (broker, got):
        acknowledged = OrderEvent(
            seq=1,
            kind=K.NEW,
            order_id=p.id,
            status=OrderStatus.NEW,
            time_ms=0,
            qty=p.spec.qty,
            filled_qty=Decimal(0),
        )
        broker.restore([(p, [acknowledged])], next_seq=2, now_ms=0)
        broker.start()
        await got.kind(p.id, K.FILL)
        assert got.corrections


async def test_alpaca_down_is_broker_unavailable_and_submits_are_rejected_in_time(
    fake: FakeAlpaca,
) -> None:
    async with alpaca_broker(fake, config=FAST) as (broker, got):
        async with fake.outage():
            o = order()
            await asyncio.wait_for(broker.submit([o]), TIMEOUT)
            assert (await got.kind(o.id, K.REJECTED)).reason is Reason.BROKER_UNAVAILABLE
            try:
                broker.check_available()
                raise AssertionError("expected BROKER_UNAVAILABLE")
            except Exception as exc:
                assert getattr(exc, "code", None) == "BROKER_UNAVAILABLE"
        async with asyncio.timeout(TIMEOUT):
            while True:
                try:
                    broker.check_available()
                    break
                except Exception:
                    await asyncio.sleep(0.05)


async def test_a_cancel_while_the_submit_is_in_flight_cancels_the_order_that_lands(
    fake: FakeAlpaca,
) -> None:
    fake.inject(Fault.hold(1.0, landed=False).on("POST", "/v2/orders"))
    async with alpaca_broker(fake) as (broker, got):
        o = order("5", type=OrderType.LIMIT, limit="180")
        submitted = broker.submit([o])
        canceling = broker.cancel(o.id)
        await asyncio.wait_for(asyncio.gather(submitted, canceling), TIMEOUT)
        await got.kind(o.id, K.CANCELED)
        assert fake.order_by_client_id(o.id).status == "canceled"
        assert len(fake.account.orders) == 1
