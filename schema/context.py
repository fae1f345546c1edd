"""The typed GraphQL context, built per HTTP request or WebSocket connection."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from strawberry.types import Info as StrawberryInfo

from server.services import Services


@dataclass
class Context:
    services: Services
    request: Any = None
    response: Any = None
    #: The ``connection_init`` payload of a WebSocket connection (strawberry sets it).
    connection_params: dict[str, Any] | None = field(default=None)


Info = StrawberryInfo[Context, None]
