"""The event bus between the ingest and the subscribers of every process.

``Bus`` is the port; ``InProcessBus`` is the embedded adapter (the Redis adapter
joins it when several processes share the load). Topics are Polygon-style
``CHANNEL.SYMBOL`` strings (``Q.AMZN``, ``T.AMZN``). Publishing never waits: a
handler runs synchronously and must only hand the message on (e.g. into a
mailbox). A failing handler is logged and isolated; it never breaks the feed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)

#: A handler receives whatever was published on its topic: ``Received`` market events
#: on ``Q.*``/``T.*``, bar and indicator updates on ``B.*``/``I.*``, fired alerts on
#: ``alerts.*``.
Handler = Callable[[Any], None]


class Bus(Protocol):
    def publish(self, topic: str, message: Any) -> None: ...

    def subscribe(self, topic: str, handler: Handler) -> None: ...

    def unsubscribe(self, topic: str, handler: Handler) -> None: ...


def attach_topic(bus: Bus, name: str) -> Callable[[Handler], Callable[[], None]]:
    """A feed's ``attach`` for one private topic (``alerts.<user>``, ``orders.<user>``):
    subscribe the group's sink, and return how to unsubscribe it."""

    def attach(sink: Handler) -> Callable[[], None]:
        bus.subscribe(name, sink)
        return lambda: bus.unsubscribe(name, sink)

    return attach


def topic(channel: str, symbol: str) -> str:
    return f"{channel}.{symbol}"


class InProcessBus:
    def __init__(self) -> None:
        # Tuples, replaced on change: publish iterates without copying and a handler
        # that (un)subscribes during delivery cannot disturb the loop.
        self._handlers: dict[str, tuple[Handler, ...]] = {}
        self.published = 0
        self.handler_errors = 0

    def publish(self, topic: str, message: Any) -> None:
        self.published += 1
        handlers = self._handlers.get(topic)
        if not handlers:
            return
        for handler in handlers:
            try:
                handler(message)
            except Exception:
                self.handler_errors += 1
                log.exception("bus handler failed for %s", topic)

    def subscribe(self, topic: str, handler: Handler) -> None:
        self._handlers[topic] = (*self._handlers.get(topic, ()), handler)

    def unsubscribe(self, topic: str, handler: Handler) -> None:
        remaining = tuple(h for h in self._handlers.get(topic, ()) if h is not handler)
        if remaining:
            self._handlers[topic] = remaining
        else:
            self._handlers.pop(topic, None)

    def topics(self) -> list[str]:
        return sorted(self._handlers)

    def stats(self) -> dict[str, int]:
        """The bus's counters by name, for ``/metrics`` (which reads any bus that has
        ``stats()``: see ``server.observability.metrics``)."""
        return {"published": self.published, "handler_errors": self.handler_errors}
