"""What can go wrong talking to Alpaca, sorted by what the adapter must do about it.

- ``Uncertain``: the request may or may not have been processed (a timeout, a reset
  connection, a 5xx, a gateway's 504). A submit is resolved by looking the order up by
  its client order id, never by sending it blindly again.
- ``NotSent``: the request certainly never reached Alpaca (connection refused).
- ``Refused``: Alpaca answered with a 4xx it means (insufficient buying power, an
  invalid order, a duplicate client order id, not found, not cancelable).
- ``BrokerUnavailable``: the user-facing error when Alpaca cannot be reached.
"""

from __future__ import annotations

from server.errors import Unavailable


class AlpacaError(Exception):
    """Base of the adapter's internal errors (never shown to users as they are)."""


class Uncertain(AlpacaError):
    pass


class NotSent(AlpacaError):
    pass


class Refused(AlpacaError):
    def __init__(self, status: int, code: int | None, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class Unauthorized(Refused):
    """401/403: the key is wrong, revoked, or of the other environment."""


class BrokerUnavailable(Unavailable):
    code = "BROKER_UNAVAILABLE"
