"""A follower's HTTP side of the relay: a GraphQL request that needs the leader is sent
to it as received (method, body, credentials, content negotiation) and its answer
returned as the leader gave it (status, media type, ``Retry-After``, body).

The caller is charged once, by the leader, which sees the same credential; the
follower neither parses nor executes what it relays.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import httpx
import orjson
from starlette.requests import Request
from starlette.responses import Response

from server.http.responses import refusal
from server.observability.correlation import current as correlation_id
from server.scaleout.fields import needs_leader

log = logging.getLogger(__name__)

#: Set on every relayed request: the receiver serves it or refuses it, never relays it
#: again (two processes that disagree for a moment about who leads cannot loop).
RELAYED = "x-tickgraph-relayed"
#: Request headers the leader needs to answer as this process would have.
_FORWARDED = ("authorization", "content-type", "accept", "user-agent")
#: Response headers that carry meaning for the client.
_RETURNED = ("content-type", "retry-after", "x-request-id")


def unavailable(message: str) -> Response:
    response = refusal(503, message, code="SERVICE_UNAVAILABLE")
    response.headers["Retry-After"] = "1"
    return response


async def operation_of(request: Request) -> tuple[str, str | None] | None:
    """The query and operation name of a GraphQL request, or ``None`` when there is
    none to read (the local server then reports what is wrong with it)."""
    if request.method == "GET":
        query = request.query_params.get("query")
        return (query, request.query_params.get("operationName")) if query else None
    if request.method != "POST":
        return None
    content_type = request.headers.get("content-type", "")
    if "json" not in content_type:
        return None
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        return None
    name = body.get("operationName")
    return body["query"], name if isinstance(name, str) else None


async def wants_leader(request: Request) -> bool:
    operation = await operation_of(request)
    return operation is not None and needs_leader(*operation)


async def relay(
    client: httpx.AsyncClient,
    leader: str,
    request: Request,
    *,
    refresh: Callable[[], Awaitable[str | None]] | None = None,
) -> Response:
    """``request`` answered by the leader at base URL ``leader``. If the leader cannot
    be reached before anything was sent (it died, or handed over), ``refresh`` finds
    the new one and the request goes there once."""
    headers = {k: v for k in _FORWARDED if (v := request.headers.get(k)) is not None}
    headers[RELAYED] = "1"
    if request.client is not None:
        # The leader believes it only from TICKGRAPH_TRUSTED_PROXIES (list the
        # deployment's network there): otherwise every client of this process shares
        # one per-address bucket on the leader.
        headers["x-forwarded-for"] = request.client.host
    if (cid := correlation_id()) is not None:
        headers["x-request-id"] = cid
    try:
        try:
            answer = await _send(client, leader, request, headers)
        except httpx.ConnectError:
            # Nothing reached the old leader: sending it to the new one is safe.
            if refresh is None or (new := await refresh()) is None or new == leader:
                raise
            leader = new
            answer = await _send(client, leader, request, headers)
    except httpx.HTTPError as exc:
        log.warning("could not relay a request to the leader at %s: %s", leader, exc)
        return unavailable("The server that holds this data is changing; try again.")
    returned = {k: v for k in _RETURNED if (v := answer.headers.get(k)) is not None}
    return Response(answer.content, status_code=answer.status_code, headers=returned)


async def _send(
    client: httpx.AsyncClient, leader: str, request: Request, headers: dict[str, str]
) -> httpx.Response:
    return await client.request(
        request.method,
        f"{leader}/graphql",
        params=str(request.query_params) if request.method == "GET" else None,
        content=await request.body() if request.method == "POST" else None,
        headers=headers,
    )
