"""The ``Broker`` port: what the order service needs of a broker, paper or real.

It is deliberately neither async nor blocking, so the same protocol fits the pure paper
engine and an HTTP/WebSocket adapter:

- ``submit``/``cancel``/``replace`` *start* a request and return at once. They never
  wait for the broker.
- Everything the broker reports comes back as ``OrderEvent`` values through the one
  listener (``set_listener``), in order, each with a strictly increasing ``seq``:
  acknowledgements (``accepted``/``held``/``new``), fills, cancels, expiries,
  rejections and the answers to cancel/replace requests (``canceled`` or
  ``cancel_rejected``; ``replaced`` + the replacement's ``new``, or
  ``replace_rejected`` + the replacement's ``rejected``).
- A request the broker can refuse on the spot (cancel an order it never had:
  ``OrderNotFound``; cancel a rejected one: ``OrderNotCancelable``; replace one that is
  not working: ``OrderNotReplaceable``) may raise synchronously.

The caller's side of the contract (the order service):

- Order ids are the caller's (``build_orders``); they are unique forever. Submitting
  an id the broker already has is a no-op, so a relay may resubmit after a crash.
- Before ``cancel``/``replace`` the caller records ``cancel_requested`` /
  ``replace_requested`` (``server.trading.states``); the broker's answers are read
  against that (a fill may still arrive first: the state table admits it).
- ``replace`` gets a new ``Order`` with its own id; its ``qty`` is the new *total*
  quantity (what the replaced order filled included).
- The listener must not raise and must not call back into the broker: it appends the
  event to the caller's queue (e.g. the ledger writer's) and returns.

How the adapters wrap it:

- **Paper** (``brokers.paper.PaperBroker``): calls the matching engine synchronously;
  events reach the listener before ``submit``/``cancel``/``replace`` return. The
  runtime also feeds it the market events of ``symbols()`` (from the bus, on the hot
  path: a tick costs microseconds) and calls ``advance(now_ms)`` on a timer so that
  closes and expiries happen in quiet markets. Its clock is the feed's: a replayed
  2012 day is traded as 2012.
- **Alpaca** (``brokers.alpaca.AlpacaBroker``): ``submit`` starts a task (the REST call
  off the event loop, with a timeout and the order id as ``client_order_id``) and
  returns it as its ``Answer``; the REST answer and the ``trade_updates`` stream become
  events for the listener. After every reconnect it reconciles over REST and emits what
  it missed. A timed-out submit is resolved by looking the order up by client id, never
  by resubmitting blindly. It also has ``resubmit`` (look up first: the start-up
  re-issue), ``check_available`` and ``opening_cash``.

``Answer``: a synchronous broker returns None (its answer is already with the
listener); an asynchronous one returns an awaitable that is done once its answer (or
the resolution of an uncertain request) has been handed to the listener. The relay
removes the request's outbox row only then (``server.services.orders.routing``), so a
crash before the answer is recorded leaves the row for the start-up re-issue.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from server.trading.events import OrderEvent
from server.trading.model import Order

#: Receives every event a broker reports, in order.
Listener = Callable[[OrderEvent], None]
#: What a request returns (see the module docstring).
Answer = Awaitable[None] | None


class Broker(Protocol):
    @property
    def name(self) -> str:
        """``"paper"``, ``"alpaca"``, ``"alpaca-live"``: recorded with each order."""
        ...

    def set_listener(self, listener: Listener) -> None:
        """Where events go from now on (set it before the first request)."""
        ...

    def submit(self, orders: Sequence[Order]) -> Answer:
        """Start placing one order, or the orders of one bracket/OCO/OTO request (as
        ``build_orders`` made them)."""
        ...

    def cancel(self, order_id: str) -> Answer:
        """Start canceling an order (the caller has recorded ``cancel_requested``)."""
        ...

    def replace(self, order_id: str, replacement: Order) -> Answer:
        """Start replacing an order by ``replacement`` (``replace_requested`` recorded)."""
        ...
