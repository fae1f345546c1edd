"""The per-process hub between the bus and local subscribers.

* The hub subscribes to the bus once per topic that has at least one local
  subscriber, and unsubscribes when the last one leaves.
* Interest is reference-counted per symbol across channels; the first subscriber
  of a symbol and the last one leaving are reported through ``on_interest``, which
  the feed uses to add and drop upstream subscriptions at run time.
* Delivery is a synchronous call of the subscriber's sink (a mailbox ``put``):
  the feed never waits for a client.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from server.delivery.bus import Bus, Handler, topic

log = logging.getLogger(__name__)

InterestListener = Callable[[str, bool], None]


class Attachment:
    """One subscriber's hold on some topics. ``close`` is idempotent."""

    __slots__ = ("_hub", "_sink", "_topics", "closed")

    def __init__(self, hub: MarketHub, topics: tuple[tuple[str, str], ...], sink: Handler) -> None:
        self._hub = hub
        self._topics = topics
        self._sink = sink
        self.closed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._hub._detach(self._topics, self._sink)


class _Topic:
    """Local subscribers of one topic and the single bus handler that feeds them."""

    __slots__ = ("handler", "sinks")

    def __init__(self) -> None:
        self.sinks: tuple[Handler, ...] = ()

        def deliver(message: Any) -> None:
            for sink in self.sinks:
                try:
                    sink(message)
                except Exception:
                    # One subscriber's bug must not cost the others their data.
                    log.exception("subscriber sink failed")

        self.handler: Handler = deliver


class MarketHub:
    def __init__(self, bus: Bus, on_interest: InterestListener | None = None) -> None:
        self._bus = bus
        self._topics: dict[str, _Topic] = {}
        self._symbol_refs: dict[str, int] = {}
        self.on_interest = on_interest

    def attach(self, channel: str, symbols: Iterable[str], sink: Handler) -> Attachment:
        """Deliver ``channel`` events of ``symbols`` to ``sink`` until the attachment closes."""
        pairs = tuple((channel, s) for s in dict.fromkeys(symbols))
        for ch, sym in pairs:
            name = topic(ch, sym)
            entry = self._topics.get(name)
            if entry is None:
                entry = self._topics[name] = _Topic()
                self._bus.subscribe(name, entry.handler)
            entry.sinks = (*entry.sinks, sink)
            self._ref(sym, +1)
        return Attachment(self, pairs, sink)

    def _detach(self, pairs: tuple[tuple[str, str], ...], sink: Handler) -> None:
        for ch, sym in pairs:
            name = topic(ch, sym)
            entry = self._topics.get(name)
            if entry is not None:
                entry.sinks = tuple(s for s in entry.sinks if s is not sink)
                if not entry.sinks:
                    del self._topics[name]
                    self._bus.unsubscribe(name, entry.handler)
            self._ref(sym, -1)

    def _ref(self, symbol: str, delta: int) -> None:
        count = self._symbol_refs.get(symbol, 0) + delta
        if count > 0:
            self._symbol_refs[symbol] = count
            if count == 1 and delta > 0:
                self._notify(symbol, True)
            return
        self._symbol_refs.pop(symbol, None)
        self._notify(symbol, False)

    def _notify(self, symbol: str, wanted: bool) -> None:
        if self.on_interest is None:
            return
        try:
            self.on_interest(symbol, wanted)
        except Exception:
            log.exception("interest listener failed for %s", symbol)

    def interest(self) -> dict[str, int]:
        """Symbols with local subscribers and how many subscriptions hold each."""
        return dict(self._symbol_refs)

    def subscriber_count(self, channel: str, symbol: str) -> int:
        entry = self._topics.get(topic(channel, symbol))
        return len(entry.sinks) if entry else 0
