"""``GET /metrics``: the Prometheus exposition, behind a bearer token when one is set.

Each app has its own registry (the process collector, the GC and platform collectors
and ``TickgraphCollector``), so several apps in one process (tests) never clash in the
library's global registry.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from server.observability.metrics import RuntimeRef, TickgraphCollector
from server.settings import Settings

Endpoint = Callable[[Request], Awaitable[Response]]


def metrics_routes(settings: Settings, runtime: RuntimeRef) -> list[Route]:
    """``/metrics`` when enabled; disabled, the path does not exist (404), so nothing
    says there are metrics to find."""
    if not settings.metrics:
        return []
    registry = registry_for(TickgraphCollector(runtime))
    return [Route("/metrics", metrics_endpoint(settings, registry))]


def registry_for(collector: TickgraphCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    registry.register(collector)
    return registry


def metrics_endpoint(settings: Settings, registry: CollectorRegistry) -> Endpoint:
    expected = None if settings.metrics_token is None else settings.metrics_token.reveal().encode()

    async def metrics(request: Request) -> Response:
        if expected is not None and not _authorized(request, expected):
            # Same answer for a missing and a wrong token: nothing to learn by probing.
            return PlainTextResponse(
                "a bearer token is required (TICKGRAPH_METRICS_TOKEN)\n",
                status_code=401,
                headers={"www-authenticate": 'Bearer realm="metrics"'},
            )
        # Collected on the event loop, in one go: the counters belong to the loop's
        # objects, and a thread would read them while they change.
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(
            encoder(registry),
            media_type=content_type,
            headers={"cache-control": "no-store"},
        )

    return metrics


def _authorized(request: Request, expected: bytes) -> bool:
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(credential.strip().encode(), expected)
