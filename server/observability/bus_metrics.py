"""The bus's figures, whatever the bus: read through a small protocol, not its class.

A bus exposes its counters by ``stats()`` (a mapping of name to value) or, failing
that, as attributes with the names below. Values are read as:

- a name in ``COUNTERS``, or any other integer: counter ``tickgraph_bus_<name>_total``;
- a name in ``GAUGES``, a bool, a float, or a name ending in ``_seconds``: gauge
  ``tickgraph_bus_<name>``;
- a ``LatencyHistogram``: histogram ``tickgraph_bus_<name>`` (``_seconds`` appended
  when missing), e.g. the Redis bus's publish → receive lag.

So the in-process bus (``published``, ``handler_errors``) and a shared bus over Redis
(``server.delivery.redis_bus``: ``sent``, ``batches``, ``dropped``, ``received``,
``stale``, ``decode_errors``, ``reconnects``, ``connected``) are exported without this
module importing either. Names outside ``[a-z][a-z0-9_]*`` are skipped: a family name
must be valid and must not depend on data.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client.core import Metric

from server.observability.families import counter, gauge, histogram
from server.observability.histogram import LatencyHistogram

COUNTERS: Mapping[str, str] = {
    "published": "Messages published on the bus",
    "sent": "Messages sent to the shared bus",
    "batches": "Writes to the shared bus the sent messages took",
    "dropped": "Messages dropped before they reached the shared bus (its queue was full)",
    "received": "Messages received from the shared bus",
    "stale": "Messages received too late to deliver, and dropped",
    "decode_errors": "Messages received that did not decode",
    "handler_errors": "Bus handlers that raised",
    "reconnects": "Connections to the shared bus lost and made again",
}
GAUGES: Mapping[str, str] = {
    "connected": "1 while the bus is connected to its server",
}
_NAME = re.compile(r"[a-z][a-z0-9_]*")


def readings(bus: Any) -> dict[str, Any]:
    """The bus's figures by name: ``stats()`` if it has one, else known attributes."""
    stats = getattr(bus, "stats", None)
    if callable(stats):
        return dict(stats())
    found: dict[str, Any] = {}
    for name in (*COUNTERS, *GAUGES):
        value = getattr(bus, name, None)
        if isinstance(value, int | float):
            found[name] = value
    return found


def bus_families(bus: Any) -> Iterator[Metric]:
    for name, value in sorted(readings(bus).items()):
        if not _NAME.fullmatch(name):
            continue
        base = "tickgraph_bus_" + name
        if isinstance(value, LatencyHistogram):
            if not base.endswith("_seconds"):
                base += "_seconds"
            yield histogram(base, f"The bus's {name.replace('_', ' ')}", value)
        elif not isinstance(value, int | float):
            continue
        elif name in COUNTERS or _counts(name, value):
            doc = COUNTERS.get(name, f"The bus's {name.replace('_', ' ')}")
            yield counter(base, doc, value)
        else:
            yield gauge(base, GAUGES.get(name, f"The bus's {name.replace('_', ' ')}"), value)


def _counts(name: str, value: int | float) -> bool:
    """An integer that is not a flag, a known gauge or a duration: a count."""
    return type(value) is int and name not in GAUGES and not name.endswith("_seconds")
