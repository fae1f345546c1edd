"""The Trading API's REST endpoints under ``/v2``, as alpaca-py's ``TradingClient``
calls them (``alpaca/trading/client.py``): GET and DELETE carry query parameters, POST
and PATCH a JSON body.

Around every endpoint: the request is recorded (the key id, never the secret), a queued
``Fault`` may strike before or after it is processed, the caller is authenticated by
``APCA-API-KEY-ID``/``APCA-API-SECRET-KEY``, and the account's rate limit is counted
(``X-Ratelimit-*`` on every answer, 429 with ``Retry-After`` past the limit).
"""

from __future__ import annotations

import hmac
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tests.support.fake_alpaca.account import Account, insufficient_qty
from tests.support.fake_alpaca.book import Position
from tests.support.fake_alpaca.faults import Fault
from tests.support.fake_alpaca.orders import Order
from tests.support.fake_alpaca.validation import (
    OrderSpec,
    parse_body,
    parse_order_request,
    parse_replace_request,
)
from tests.support.fake_alpaca.wire import (
    CODE_UNAUTHORIZED,
    AlpacaError,
    invalid,
    not_found,
    parse_time,
)

if TYPE_CHECKING:
    from tests.support.fake_alpaca.fake import FakeAlpaca

JSON = "application/json; charset=UTF-8"
Answer = tuple[int, Any]  # status, JSON payload (None: no body)
Operation = Callable[[Account, Request, bytes], Answer]
ACTIVITY_TYPES = frozenset(
    {
        *("FILL", "TRANS", "MISC", "ACATC", "ACATS", "CSD", "CSW", "DIV", "DIVCGL", "DIVCGS"),
        *("DIVNRA", "DIVROC", "DIVTXEX", "INT", "JNLC", "JNLS", "MA", "NC", "OPASN", "OPEXP"),
        *("OPXRC", "PTC", "REORG", "SPIN", "SPLIT"),
    }
)


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    body: bytes
    key_id: str | None
    #: The status answered; None while in flight, or when the connection was reset.
    status: int | None = None

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def routes(fake: FakeAlpaca) -> list[BaseRoute]:
    def route(path: str, methods: dict[str, Operation]) -> Route:
        async def endpoint(request: Request) -> Response:
            return await handle(fake, request, methods[request.method])

        return Route(path, endpoint, methods=list(methods))

    return [
        route("/v2/account", {"GET": lambda a, r, b: (200, a.to_json())}),
        route("/v2/clock", {"GET": lambda a, r, b: (200, fake.market.clock_json())}),
        route("/v2/assets", {"GET": lambda a, r, b: (200, list_assets(fake, r))}),
        route("/v2/assets/{symbol}", {"GET": lambda a, r, b: (200, get_asset(fake, r))}),
        route("/v2/orders", {"POST": submit, "GET": list_orders, "DELETE": cancel_all}),
        route("/v2/orders:by_client_order_id", {"GET": by_client_order_id}),
        route(
            "/v2/orders/{order_id}",
            {"GET": get_order, "PATCH": replace_order, "DELETE": cancel_order},
        ),
        route("/v2/positions", {"GET": list_positions, "DELETE": close_all_positions}),
        route("/v2/positions/{symbol}", {"GET": get_position, "DELETE": close_position}),
        route("/v2/account/activities", {"GET": activities}),
        route("/v2/account/activities/{activity_type}", {"GET": activities}),
    ]


# --- around every endpoint ----------------------------------------------------------


async def handle(fake: FakeAlpaca, request: Request, operation: Operation) -> Response:
    raw = await request.body()
    record = RecordedRequest(
        request.method,
        request.url.path,
        dict(request.query_params),
        raw,
        request.headers.get("apca-api-key-id"),
    )
    fake.requests.append(record)
    fault = fake.take_fault(request.method, request.url.path)
    if fault is not None and not fault.landed:
        await fake.held(fault.delay_s)
        if fault.drop or fault.status is not None:
            return await fault_answer(fake, request, fault, record)
    response = answer(fake, request, raw, operation)
    if fault is not None and fault.landed:
        await fake.held(fault.delay_s)
        if fault.drop or fault.status is not None:
            return await fault_answer(fake, request, fault, record)
    record.status = response.status_code
    return response


def answer(fake: FakeAlpaca, request: Request, raw: bytes, operation: Operation) -> Response:
    headers: dict[str, str] = {}
    try:
        account = authenticate(fake, request)
        headers = fake.rate_limiter.take(account.key_id)
        status, payload = operation(account, request, raw)
    except AlpacaError as error:
        status, payload, headers = error.status, error.body(), {**headers, **error.headers}
    if payload is None:
        return Response(status_code=status, headers=headers)
    return Response(json.dumps(payload).encode(), status, headers=headers, media_type=JSON)


async def fault_answer(
    fake: FakeAlpaca, request: Request, fault: Fault, record: RecordedRequest
) -> Response:
    if fault.drop:
        await fake.reset_connection(request)
        return Response(status_code=500)  # never sent: the connection is gone
    body = fault.body
    raw = json.dumps(body).encode() if isinstance(body, dict) else (body or b"")
    record.status = fault.status
    headers = {"Content-Type": JSON, **fault.headers}
    return Response(raw, fault.status or 500, headers=headers)


def authenticate(fake: FakeAlpaca, request: Request) -> Account:
    key_id = request.headers.get("apca-api-key-id")
    secret = request.headers.get("apca-api-secret-key")
    if not key_id or not secret:
        # Without both headers the API gateway answers, with no Alpaca code.
        raise AlpacaError(403, None, "forbidden.")
    account = fake.accounts.get(key_id)
    if account is None or not hmac.compare_digest(secret.encode(), account.secret.encode()):
        raise AlpacaError(401, CODE_UNAUTHORIZED, "request is not authorized")
    return account


# --- parameters -----------------------------------------------------------------------


def param_int(request: Request, name: str, default: int, maximum: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid(f"invalid {name}: {raw}") from None
    if not 0 < value <= maximum:
        raise invalid(f"{name} must be between 1 and {maximum}")
    return value


def param_time(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return parse_time(raw)
    except ValueError:
        raise invalid(f"invalid {name}: {raw}") from None


def param_bool(request: Request, name: str) -> bool:
    return request.query_params.get(name, "false").lower() == "true"


def param_choice(request: Request, name: str, allowed: set[str], default: str) -> str:
    value = request.query_params.get(name, default)
    if value not in allowed:
        raise invalid(f"invalid {name}: {value}")
    return value


def order_of(account: Account, order_id: str) -> Order:
    try:
        uuid.UUID(order_id)
    except ValueError:
        raise invalid("order_id is invalid") from None
    order = account.orders.get(order_id)
    if order is None:
        raise not_found("order not found")
    return order


# --- assets ---------------------------------------------------------------------------


def list_assets(fake: FakeAlpaca, request: Request) -> list[dict[str, Any]]:
    status = request.query_params.get("status")
    return [
        a.to_json()
        for a in fake.market.assets.values()
        if status is None or a.to_json()["status"] == status
    ]


def get_asset(fake: FakeAlpaca, request: Request) -> dict[str, Any]:
    asset = fake.market.asset(request.path_params["symbol"])
    if asset is None:
        raise not_found("asset not found")
    return asset.to_json()


# --- orders ---------------------------------------------------------------------------


def submit(account: Account, request: Request, raw: bytes) -> Answer:
    spec = parse_order_request(parse_body(raw), account.market.asset)
    _, body = account.submit(spec)
    return 200, body


def list_orders(account: Account, request: Request, raw: bytes) -> Answer:
    status = param_choice(request, "status", {"open", "closed", "all"}, "open")
    limit = param_int(request, "limit", 50, 500)
    after = param_time(request, "after")
    until = param_time(request, "until")
    direction = param_choice(request, "direction", {"asc", "desc"}, "desc")
    nested = param_bool(request, "nested")
    side = request.query_params.get("side")
    symbols = request.query_params.get("symbols")
    wanted = {s.strip().upper() for s in symbols.split(",")} if symbols else None
    orders = account.roots() if nested else iter(account.orders.values())
    selected = [
        o
        for o in orders
        if (status == "all" or o.is_open == (status == "open"))
        and (after is None or o.created_ns > after)
        and (until is None or o.created_ns < until)
        and (side is None or o.side == side)
        and (wanted is None or o.symbol in wanted)
    ]
    selected.sort(key=lambda o: o.created_ns, reverse=direction == "desc")
    return 200, [o.to_json(nested=nested) for o in selected[:limit]]


def by_client_order_id(account: Account, request: Request, raw: bytes) -> Answer:
    client_order_id = request.query_params.get("client_order_id")
    if not client_order_id:
        raise invalid("client_order_id is required")
    order = account.by_client_order_id.get(client_order_id)
    if order is None:
        raise not_found("order not found")
    return 200, order.to_json()


def get_order(account: Account, request: Request, raw: bytes) -> Answer:
    order = order_of(account, request.path_params["order_id"])
    return 200, order.to_json(nested=param_bool(request, "nested"))


def replace_order(account: Account, request: Request, raw: bytes) -> Answer:
    order = order_of(account, request.path_params["order_id"])
    return 200, account.replace(order, parse_replace_request(parse_body(raw)))


def cancel_order(account: Account, request: Request, raw: bytes) -> Answer:
    account.request_cancel(order_of(account, request.path_params["order_id"]))
    return 204, None


def cancel_all(account: Account, request: Request, raw: bytes) -> Answer:
    """207 Multi-Status: one entry per open order, with its own status."""
    results = []
    for order in account.open_orders():
        try:
            account.request_cancel(order)
        except AlpacaError as error:
            results.append({"id": order.id, "status": error.status, "body": error.body()})
        else:
            results.append({"id": order.id, "status": 200, "body": order.to_json()})
    return 207, results


# --- positions ------------------------------------------------------------------------


def list_positions(account: Account, request: Request, raw: bytes) -> Answer:
    return 200, [account.position_json(p) for p in account.positions.values()]


def position_of(account: Account, symbol_or_id: str) -> Position:
    asset = account.market.asset(symbol_or_id)
    position = account.positions.get(asset.symbol) if asset else None
    if position is None:
        raise not_found("position does not exist")
    return position


def get_position(account: Account, request: Request, raw: bytes) -> Answer:
    return 200, account.position_json(position_of(account, request.path_params["symbol"]))


def close_position(account: Account, request: Request, raw: bytes) -> Answer:
    """A market order for the position (or ``qty`` of it, or ``percentage`` of it), with
    a client order id Alpaca makes up: a caller cannot make this idempotent."""
    return 200, _close(account, position_of(account, request.path_params["symbol"]), request)


def close_all_positions(account: Account, request: Request, raw: bytes) -> Answer:
    if param_bool(request, "cancel_orders"):
        cancel_all(account, request, raw)
    results = []
    for position in list(account.positions.values()):
        symbol = position.asset.symbol
        try:
            body = _close(account, position, None)
        except AlpacaError as error:
            results.append({"symbol": symbol, "status": error.status, "body": error.body()})
        else:
            results.append({"symbol": symbol, "status": 200, "order_id": body["id"], "body": body})
    return 207, results


def _close(account: Account, position: Position, request: Request | None) -> dict[str, Any]:
    size = abs(position.qty)
    params = request.query_params if request is not None else {}
    try:
        if params.get("qty") is not None:
            size = Decimal(params["qty"])
        elif params.get("percentage") is not None:
            size = (size * Decimal(params["percentage"]) / 100).quantize(Decimal("1e-9"))
    except InvalidOperation:
        raise invalid("invalid qty or percentage") from None
    if not size.is_finite() or size <= 0:
        raise invalid("qty must be > 0")
    side = "sell" if position.qty > 0 else "buy"
    held = account.held_for_orders(position.asset.symbol, side)
    available = abs(position.qty) - held
    if size > available:
        # Shares promised to open orders cannot be closed: cancel those first.
        raise insufficient_qty(position.asset.symbol, size, available, position.qty, held)
    spec = OrderSpec(
        asset=position.asset,
        side=side,
        type="market",
        time_in_force="day",
        order_class="simple",
        qty=size,
        notional=None,
        limit_price=None,
        stop_price=None,
        trail_price=None,
        trail_percent=None,
        extended_hours=False,
        client_order_id=None,
        position_intent="sell_to_close" if position.qty > 0 else "buy_to_close",
        take_profit=None,
        stop_loss=None,
    )
    _, body = account.submit(spec)
    return body


# --- activities -----------------------------------------------------------------------


def activities(account: Account, request: Request, raw: bytes) -> Answer:
    """Fills only (the fake has no other activity), newest first unless ``direction``
    says otherwise; ``page_token`` is the id of the last activity already seen."""
    kinds = request.path_params.get("activity_type") or request.query_params.get(
        "activity_types", "FILL"
    )
    for kind in str(kinds).split(","):
        if kind not in ACTIVITY_TYPES:
            raise invalid(f"invalid activity type: {kind}")
    if "FILL" not in str(kinds).split(","):
        return 200, []
    direction = param_choice(request, "direction", {"asc", "desc"}, "desc")
    page_size = param_int(request, "page_size", 100, 100)
    after = param_time(request, "after")
    until = param_time(request, "until")
    day = request.query_params.get("date")
    token = request.query_params.get("page_token")
    fills = sorted(account.fills, key=lambda f: f.ns, reverse=direction == "desc")
    if day is not None:
        start = parse_time(day[:10])
        after, until = start - 1, start + 86_400 * 10**9
    selected = [
        f for f in fills if (after is None or f.ns > after) and (until is None or f.ns < until)
    ]
    if token is not None:
        ids = [f.activity_id for f in selected]
        if token not in ids:
            raise invalid("invalid page_token")
        selected = selected[ids.index(token) + 1 :]
    return 200, [f.to_json() for f in selected[:page_size]]
