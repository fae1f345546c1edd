"""A broker per user: the ``Broker`` port over the default broker and users' own.

The order service holds one ``Broker``; in a deployment with linked accounts that is a
``BrokerRouter``: a user with a linked Alpaca account trades there, everyone else with
the default (the paper broker, or the operator's Alpaca account). Requests go to the
broker of the order's owner (the book knows the owner of every open order); every
broker reports to the one listener.

The helpers below are what the service asks of any broker, router or not, so the paper
path stays exactly as it was:

- ``broker_name``: recorded with each order and account.
- ``when_answered``: an asynchronous broker returns a future from ``submit``/``cancel``/
  ``replace``, done once its answer has reached the listener; the relay removes the
  outbox row only then, so a crash before that re-issues the request at start-up.
- ``check_available``: ``BROKER_UNAVAILABLE`` before anything is written, when the
  user's broker cannot be reached.
- ``opening_cash``: a new account's starting cash (a real broker's own cash).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal

from brokers.port import Answer, Broker, Listener
from server.trading.events import OrderEvent
from server.trading.model import Order


class BrokerRouter:
    def __init__(self, default: Broker, owner_of: Callable[[str], str | None]) -> None:
        self.default = default
        self._owner_of = owner_of
        self._linked: dict[str, Broker] = {}
        self._listener: Listener | None = None

    @property
    def name(self) -> str:
        return self.default.name

    def set_listener(self, listener: Listener) -> None:
        self._listener = listener
        self.default.set_listener(listener)
        for broker in self._linked.values():
            broker.set_listener(listener)

    @property
    def listener(self) -> Listener | None:
        return self._listener

    def attach(self, owner: str, broker: Broker) -> None:
        if self._listener is not None:
            broker.set_listener(self._listener)
        self._linked[owner] = broker

    def detach(self, owner: str) -> Broker | None:
        return self._linked.pop(owner, None)

    def for_owner(self, owner: str) -> Broker:
        return self._linked.get(owner, self.default)

    def linked(self) -> dict[str, Broker]:
        return dict(self._linked)

    def _for_order(self, order_id: str) -> Broker:
        owner = self._owner_of(order_id)
        return self.default if owner is None else self.for_owner(owner)

    # --- the port -----------------------------------------------------------------------

    def submit(self, orders: Sequence[Order]) -> Answer:
        return self._for_order(orders[0].id).submit(orders)

    def resubmit(self, orders: Sequence[Order]) -> Answer:
        broker = self._for_order(orders[0].id)
        return getattr(broker, "resubmit", broker.submit)(orders)

    def cancel(self, order_id: str) -> Answer:
        return self._for_order(order_id).cancel(order_id)

    def replace(self, order_id: str, replacement: Order) -> Answer:
        return self._for_order(order_id).replace(order_id, replacement)

    def restore(
        self,
        ledger: Iterable[tuple[Order, Sequence[OrderEvent]]],
        *,
        next_seq: int,
        now_ms: int,
    ) -> None:
        """Each broker that keeps orders in this process takes back its own."""
        groups: dict[int, tuple[Broker, list[tuple[Order, Sequence[OrderEvent]]]]] = {}
        for order, events in ledger:
            broker = self._for_order(order.id)
            groups.setdefault(id(broker), (broker, []))[1].append((order, events))
        for broker, group in groups.values():
            restore = getattr(broker, "restore", None)
            if restore is not None:
                restore(group, next_seq=next_seq, now_ms=now_ms)


def _target(broker: Broker, owner: str) -> Broker:
    return broker.for_owner(owner) if isinstance(broker, BrokerRouter) else broker


def broker_name(broker: Broker, owner: str) -> str:
    return _target(broker, owner).name


def check_available(broker: Broker, owner: str) -> None:
    check = getattr(_target(broker, owner), "check_available", None)
    if check is not None:
        check()


async def opening_cash(broker: Broker, owner: str, default: Decimal) -> Decimal:
    fetch = getattr(_target(broker, owner), "opening_cash", None)
    return default if fetch is None else Decimal(await fetch())


def when_answered(result: Answer, done: Callable[[], None]) -> None:
    """Call ``done`` now (a synchronous broker answered already) or once the future an
    asynchronous broker returned is done."""
    if isinstance(result, asyncio.Future):
        result.add_done_callback(lambda _: done())
    elif result is None:
        done()
    else:
        asyncio.ensure_future(result).add_done_callback(lambda _: done())


def resubmit(broker: Broker, orders: Sequence[Order]) -> Answer:
    """The start-up re-issue of a submit: a broker that can look orders up does so first."""
    return getattr(broker, "resubmit", broker.submit)(orders)
