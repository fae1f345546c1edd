"""The typed GraphQL context, built per HTTP request or WebSocket connection."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from strawberry.types import Info as StrawberryInfo

from server.auth.access import Caller
from server.services.container import Services


@dataclass
class Context:
    services: Services
    caller: Caller
    request: Any = None
    response: Any = None
    #: The ``connection_init`` payload of a WebSocket connection (strawberry sets it).
    connection_params: dict[str, Any] | None = field(default=None)

    @property
    def query_cost_budget(self) -> int:
        """The caller's per-operation cost budget (read by the cost analysis)."""
        return self.caller.query_cost_budget


Info = StrawberryInfo[Context, None]
