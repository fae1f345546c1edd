"""``PaperBroker``: the matching engine behind the ``Broker`` port.

Pure and synchronous: every call runs the engine and hands the events it caused to the
listener before returning. The runtime (an I/O layer, not this module) feeds it market
events and clock ticks; see ``brokers.port`` for how.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING

from brokers.paper.config import PaperConfig
from brokers.paper.matching import MatchingEngine
from brokers.port import Broker, Listener
from server.trading.events import OrderEvent
from server.trading.model import Order
from streams.events import MarketEvent


def _drop(event: OrderEvent) -> None:
    """The listener until one is set: a broker must never be used without one."""
    raise RuntimeError(f"PaperBroker has no listener for {event.kind} of {event.order_id}")


class PaperBroker:
    name = "paper"

    def __init__(self, engine: MatchingEngine | None = None, config: PaperConfig | None = None):
        self.engine = engine if engine is not None else MatchingEngine(config)
        self._listener: Listener = _drop

    def set_listener(self, listener: Listener) -> None:
        self._listener = listener

    def _deliver(self, events: list[OrderEvent]) -> None:
        listener = self._listener
        for event in events:
            listener(event)

    # --- the port ---------------------------------------------------------------------

    def submit(self, orders: Sequence[Order]) -> None:
        self._deliver(self.engine.submit(orders))

    def cancel(self, order_id: str) -> None:
        self._deliver(self.engine.cancel(order_id))

    def replace(self, order_id: str, replacement: Order) -> None:
        self._deliver(self.engine.replace(order_id, replacement))

    # --- start-up -------------------------------------------------------------------

    def restore(
        self,
        ledger: Iterable[tuple[Order, Sequence[OrderEvent]]],
        *,
        next_seq: int,
        now_ms: int,
        water_marks: Mapping[str, Decimal | None] | None = None,
        market: Iterable[MarketEvent] = (),
    ) -> None:
        """Rebuild the engine's orders from their ledgers after a restart
        (``MatchingEngine.restore``); the events the ledger lacked go to the listener,
        which must be set first."""
        events = self.engine.restore(
            ledger, next_seq=next_seq, now_ms=now_ms, water_marks=water_marks, market=market
        )
        self._deliver(events)

    # --- what the runtime feeds it ----------------------------------------------------

    def on_market_event(self, event: MarketEvent) -> None:
        """A decoded feed event (quotes and trades matter; others are ignored)."""
        events = self.engine.on_event(event)
        if events:
            self._deliver(events)

    def advance(self, now_ms: int) -> None:
        """The clock moved (closes, expiries and auctions up to ``now_ms``)."""
        self._deliver(self.engine.advance(now_ms))

    def symbols(self) -> list[str]:
        """The symbols whose quotes and trades the broker needs now."""
        return self.engine.symbols()


if TYPE_CHECKING:  # the paper broker implements the port (checked by mypy)
    _PORT: Broker = PaperBroker()
