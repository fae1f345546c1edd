"""The Alpaca adapter behind the ``Broker`` port (docs/alpaca.md).

- ``wire``: Alpaca's JSON both ways, exact decimals (pure).
- ``tracker``: each order's state; reports from any channel turned into our events once
  (pure).
- ``pacing``: the 200 requests/minute limit and 429 pauses (pure).
- ``rest``: alpaca-py's ``TradingClient`` off the event loop, with our timeouts and
  retry policy.
- ``stream``: ``trade_updates`` with a signal on every (re)connect.
- ``reconcile``: open orders, fills and positions read back after each connect.
- ``broker``: ``AlpacaBroker``, the port.
"""

from brokers.alpaca.broker import AlpacaBroker, AlpacaConfig
from brokers.alpaca.errors import BrokerUnavailable
from brokers.alpaca.pacing import Pacing
from brokers.alpaca.reconcile import Correction
from brokers.alpaca.rest import Credentials, RestConfig

__all__ = [
    "AlpacaBroker",
    "AlpacaConfig",
    "BrokerUnavailable",
    "Correction",
    "Credentials",
    "Pacing",
    "RestConfig",
]
