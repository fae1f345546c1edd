"""``FakeAlpaca``: the server, its accounts, and what tests do to it."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from decimal import Decimal
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from tests.support.fake_alpaca.account import Account
from tests.support.fake_alpaca.faults import Fault, RateLimiter
from tests.support.fake_alpaca.lifecycle import trailing_stop_price
from tests.support.fake_alpaca.market import Market, VenueRules
from tests.support.fake_alpaca.orders import Asset, Order
from tests.support.fake_alpaca.rest import RecordedRequest, routes
from tests.support.fake_alpaca.stream import StreamConnection, stream_endpoint
from tests.support.fake_alpaca.wire import CODE_NOT_FOUND, exact
from tests.support.loopback import abort_connection, loopback_socket, serve_asgi
from tests.support.timing import TIMEOUT

DEFAULT_KEY_ID = "PKTEST000000000000000"
DEFAULT_SECRET = "fake-alpaca-secret-0000000000000000000000"


class FakeAlpaca:
    """A local Alpaca Trading API (REST under ``/v2``, ``trade_updates`` at ``/stream``)
    on a free loopback port, for the real alpaca-py client::

        async with FakeAlpaca() as fake:
            client = TradingClient(fake.key_id, fake.secret, url_override=fake.base_url)
            stream = TradingStream(fake.key_id, fake.secret, url_override=fake.stream_url)

    State lives in this object, not in a connection: it outlives every client, stream
    reconnect and ``outage()``. Call its methods from the event loop it runs on.
    """

    def __init__(
        self,
        key_id: str = DEFAULT_KEY_ID,
        secret: str = DEFAULT_SECRET,
        *,
        cash: Decimal | str = "100000",
        multiplier: Decimal | str = "2",
        shorting_enabled: bool = True,
        rate_limit: int = 200,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.market = Market(clock)
        self.accounts: dict[str, Account] = {}
        self.account = self.add_account(
            key_id, secret, cash=cash, multiplier=multiplier, shorting_enabled=shorting_enabled
        )
        self.rate_limiter = RateLimiter(rate_limit)
        #: Every REST request, in arrival order.
        self.requests: list[RecordedRequest] = []
        #: Applied to every request that no queued fault matched.
        self.always: Fault | None = None
        #: Frame type of the stream: binary (as Alpaca's paper stream) or text.
        self.binary_frames = True
        self.streams_refused = False
        #: Stream connections accepted so far (a reconnect adds one).
        self.stream_connections_total = 0
        self._faults: deque[Fault] = deque()
        self._streams: set[StreamConnection] = set()
        self._release = asyncio.Event()
        self._stopping = False
        self._server: uvicorn.Server | None = None
        self._port = 0
        self._stack: contextlib.AsyncExitStack | None = None
        self.app = Starlette(
            routes=[*routes(self), WebSocketRoute("/stream", self._stream)],
            exception_handlers={404: self._not_found},
        )

    # --- where it is ---------------------------------------------------------------

    @property
    def key_id(self) -> str:
        return self.account.key_id

    @property
    def secret(self) -> str:
        return self.account.secret

    @property
    def base_url(self) -> str:
        """For ``TradingClient(url_override=...)``, which appends ``/v2``."""
        assert self._port, "the fake is not running"
        return f"http://127.0.0.1:{self._port}"

    @property
    def stream_url(self) -> str:
        """For ``TradingStream(url_override=...)``."""
        assert self._port, "the fake is not running"
        return f"ws://127.0.0.1:{self._port}/stream"

    # --- accounts, assets, the market -------------------------------------------------

    def add_account(
        self,
        key_id: str,
        secret: str,
        *,
        cash: Decimal | str = "100000",
        multiplier: Decimal | str = "2",
        shorting_enabled: bool = True,
    ) -> Account:
        account = Account(
            self.market,
            key_id,
            secret,
            cash=exact(cash),
            multiplier=exact(multiplier),
            shorting_enabled=shorting_enabled,
        )
        self.accounts[key_id] = account
        return account

    def add_asset(self, symbol: str, price: Decimal | str, **attributes: Any) -> Asset:
        """``attributes``: ``exchange``, ``tradable``, ``shortable``, ``fractionable``..."""
        return self.market.add_asset(symbol, price, **attributes)

    def set_price(self, symbol: str, price: Decimal | str) -> None:
        """Move the mark (what market orders are checked and auto-filled against, and
        positions are valued at); trailing stops follow their high/low water mark. Stops
        are not triggered by it: tests fill explicitly."""
        asset = self.market.assets[symbol.upper()]
        asset.price = exact(price)
        for account in self.accounts.values():
            for order in account.orders.values():
                if order.type == "trailing_stop" and order.is_open and order.asset is asset:
                    assert order.hwm is not None
                    better = max if order.side == "sell" else min
                    order.hwm = better(order.hwm, asset.price)
                    order.stop_price = trailing_stop_price(order)

    def open_market(self) -> None:
        """Open the session: orders ``accepted`` while it was closed become ``new``."""
        self.market.is_open = True
        if not self.market.rules.auto_accept:
            return
        for account in self.accounts.values():
            for order in list(account.roots()):
                if order.status == "accepted":
                    account.accept(order)

    def close_market(self, *, expire_day_orders: bool = True) -> None:
        """The close: DAY (and OPG, CLS, IOC, FOK) orders still open expire."""
        self.market.is_open = False
        if not expire_day_orders:
            return
        for account in self.accounts.values():
            for order in list(account.orders.values()):
                with_parent = order.parent is not None and order.parent.is_open
                if order.is_open and order.time_in_force != "gtc" and not with_parent:
                    account.end(order, "expired")  # an open parent takes its legs along

    @property
    def rules(self) -> VenueRules:
        """``auto_accept``, ``auto_cancel``, ``auto_replace``, ``auto_fill_market``."""
        return self.market.rules

    # --- the venue, per order ----------------------------------------------------------

    def order(self, order_id: Any) -> Order:
        """An order of any account, by id (str or UUID)."""
        return self._owner(order_id)[1]

    def order_by_client_id(self, client_order_id: str, account: Account | None = None) -> Order:
        return (account or self.account).by_client_order_id[client_order_id]

    def _owner(self, order_id: Any) -> tuple[Account, Order]:
        order_id = str(order_id)
        for account in self.accounts.values():
            if order_id in account.orders:
                return account, account.orders[order_id]
        raise KeyError(f"no order {order_id}")

    def accept(self, order_id: Any) -> None:
        """``pending_new`` (or ``accepted``) -> ``new``, with its trade update."""
        account, order = self._owner(order_id)
        account.accept(order)

    def fill(self, order_id: Any, price: Decimal | str, qty: Decimal | str | None = None) -> None:
        """Execute ``qty`` (default: all that remains) at ``price``: a ``fill`` update
        when that completes the order, ``partial_fill`` otherwise. Cash, the position,
        the fill activities and the mark move with it. Refuses what a venue could not
        do (through the limit, more than remains, an order that is not working)."""
        account, order = self._owner(order_id)
        account.fill(order, None if qty is None else exact(qty), exact(price))

    def partial_fill(self, order_id: Any, qty: Decimal | str, price: Decimal | str) -> None:
        account, order = self._owner(order_id)
        if exact(qty) >= order.remaining_qty(exact(price)):
            raise ValueError("a partial fill must leave something to fill")
        account.fill(order, exact(qty), exact(price))

    def cancel_by_venue(self, order_id: Any) -> None:
        account, order = self._owner(order_id)
        account.end(order, "canceled")

    def expire(self, order_id: Any) -> None:
        account, order = self._owner(order_id)
        account.end(order, "expired")

    def reject(self, order_id: Any, reason: str = "rejected by the venue") -> None:
        account, order = self._owner(order_id)
        account.reject(order, reason)

    def reject_next(
        self, reason: str = "rejected by the venue", account: Account | None = None
    ) -> None:
        """The next order submitted is taken (the POST answers 200, ``pending_new``) and
        then rejected by the venue: a ``rejected`` update, ``failed_at`` set."""
        (account or self.account).reject_reasons.append(reason)

    def done_for_day(self, order_id: Any) -> None:
        account, order = self._owner(order_id)
        account.transition(order, "done_for_day")

    def set_status(self, order_id: Any, status: str) -> None:
        """A status that keeps the order open (``suspended``, ``calculated``,
        ``stopped``...), with the trade update of the same name."""
        account, order = self._owner(order_id)
        account.transition(order, status)

    def confirm_cancel(self, order_id: Any) -> None:
        account, order = self._owner(order_id)
        account.confirm_cancel(order)

    def reject_cancel(self, order_id: Any) -> None:
        account, order = self._owner(order_id)
        account.reject_cancel(order)

    def confirm_replace(self, order_id: Any) -> None:
        account, order = self._owner(order_id)
        account.confirm_replace(order)

    def reject_replace(self, order_id: Any) -> None:
        account, order = self._owner(order_id)
        if order.status != "pending_replace":
            raise ValueError(f"order {order.id} has no replace pending: it is {order.status}")
        account.reject_replace(order)

    # --- faults ------------------------------------------------------------------------

    def inject(self, *faults: Fault) -> None:
        """Queue faults; each strikes the first later request it matches, once."""
        self._faults.extend(faults)

    def take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self._faults:
            if fault.matches(method, path):
                self._faults.remove(fault)
                return fault
        if self.always is not None and self.always.matches(method, path):
            return self.always
        return None

    async def held(self, delay_s: float) -> None:
        """Wait ``delay_s``, or less if ``release_held()`` is called or the fake stops."""
        if delay_s <= 0 or self._stopping:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._release.wait(), delay_s)

    def release_held(self) -> None:
        """Let every held answer go now."""
        self._release.set()
        self._release = asyncio.Event()

    async def reset_connection(self, request: Request) -> None:
        assert self._server is not None
        abort_connection(self._server, request.scope.get("client"))
        async with asyncio.timeout(TIMEOUT):
            while True:  # the server learns of the reset on a later loop iteration
                if await request.is_disconnected():
                    return
                await asyncio.sleep(0.001)

    def submissions(self, client_order_id: str | None = None) -> list[RecordedRequest]:
        """The ``POST /v2/orders`` requests received (for one client order id)."""
        return [
            r
            for r in self.requests
            if r.method == "POST"
            and r.path == "/v2/orders"
            and (
                client_order_id is None
                or (r.json() or {}).get("client_order_id") == client_order_id
            )
        ]

    # --- the stream --------------------------------------------------------------------

    async def _stream(self, websocket: WebSocket) -> None:
        await stream_endpoint(self, websocket)

    def stream_connected(self, connection: StreamConnection) -> None:
        self._streams.add(connection)
        self.stream_connections_total += 1

    def stream_disconnected(self, connection: StreamConnection) -> None:
        self._streams.discard(connection)

    def drop_streams(self) -> int:
        """Reset every stream connection (no close frame, as when the network dies);
        the number dropped. Clients may reconnect at once."""
        assert self._server is not None
        dropped = 0
        for connection in list(self._streams):
            if connection.account is not None:
                connection.account.listeners.discard(connection.push)
            dropped += abort_connection(self._server, connection.client)
        return dropped

    @contextlib.contextmanager
    def stream_outage(self) -> Iterator[None]:
        """Drop the streams and refuse new ones (503) until the block ends."""
        self.streams_refused = True
        self.drop_streams()
        try:
            yield
        finally:
            self.streams_refused = False

    async def wait_for_listeners(self, count: int = 1, account: Account | None = None) -> None:
        """Until ``count`` connections listen to ``trade_updates`` for the account."""
        account = account or self.account
        async with asyncio.timeout(TIMEOUT):
            while True:
                if len(account.listeners) >= count:
                    return
                await asyncio.sleep(0.01)

    # --- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> FakeAlpaca:
        await self._start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stop()

    async def _start(self) -> None:
        sock = loopback_socket(self._port)
        self._port = sock.getsockname()[1]
        self._stopping = False
        self._stack = contextlib.AsyncExitStack()
        self._server = await self._stack.enter_async_context(
            serve_asgi(self.app, sock, name="fake Alpaca")
        )

    async def _stop(self) -> None:
        self._stopping = True
        self.release_held()  # held answers go out now, so the server can stop
        assert self._stack is not None
        await self._stack.aclose()

    @contextlib.asynccontextmanager
    async def outage(self) -> AsyncIterator[None]:
        """Alpaca unreachable: the port refuses connections (every open one, streams
        included, is closed) until the block ends; then it serves again on the same
        port, with the same state."""
        await self._stop()
        try:
            yield
        finally:
            await self._start()

    async def _not_found(self, request: Request, exc: Exception) -> Response:
        return Response(
            b'{"code":%d,"message":"endpoint not found"}' % CODE_NOT_FOUND,
            404,
            media_type="application/json",
        )
