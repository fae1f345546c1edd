"""How uvicorn serves tickgraph: one place, for the CLI and the test servers alike."""

from __future__ import annotations

from typing import Any

import uvicorn

from server.settings import Settings

#: uvicorn's sans-I/O WebSocket protocol plus the direct frame writer the outbox uses
#: (``server.ws_protocol``). uvloop and httptools are used when installed
#: (uvicorn's "auto"), the pure-Python asyncio and h11 otherwise.
WS_PROTOCOL = "server.ws_protocol:FanoutWebSocketProtocol"


def uvicorn_config(app: Any, settings: Settings, **overrides: Any) -> uvicorn.Config:
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "ws": WS_PROTOCOL,
        "ws_max_size": settings.ws_max_message_bytes,
        # Compression costs CPU and tens of KiB per connection; clients rarely need it
        # for small JSON messages.
        "ws_per_message_deflate": settings.ws_compression,
        "lifespan": "on",
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": 5,
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)
