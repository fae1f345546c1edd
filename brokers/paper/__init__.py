"""The built-in paper broker: a deterministic matching engine over the live feed.

Pure and synchronous (no I/O). ``PaperBroker`` implements ``brokers.port.Broker`` over
``MatchingEngine``; ``PaperConfig`` holds fees, slippage, the calendar and the GTC
lifetime. ``docs/trading.md`` describes the fill rules.
"""

from brokers.paper.broker import PaperBroker
from brokers.paper.config import Commission, PaperConfig
from brokers.paper.matching import MatchingEngine, OrderView

__all__ = ["Commission", "MatchingEngine", "OrderView", "PaperBroker", "PaperConfig"]
