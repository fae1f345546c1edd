"""A local fake of Alpaca's Trading API that the real alpaca-py client works against.

REST under ``/v2`` (account, clock, assets, orders, positions, fill activities) and the
``trade_updates`` WebSocket at ``/stream``, with Alpaca's paths, JSON shapes, decimal
strings, nanosecond timestamps, status codes and error bodies; a deterministic venue
that tests drive (``fill``, ``partial_fill``, ``cancel_by_venue``, ``expire``,
``reject_next``...); and the faults a broker connection meets (``Fault``, rate limits,
dropped streams, outages). ``docs/alpaca.md`` describes it, and what it leaves out.
"""

from tests.support.fake_alpaca.account import Account
from tests.support.fake_alpaca.fake import DEFAULT_KEY_ID, DEFAULT_SECRET, FakeAlpaca
from tests.support.fake_alpaca.faults import Fault
from tests.support.fake_alpaca.orders import Asset, Order
from tests.support.fake_alpaca.rest import RecordedRequest

__all__ = [
    "DEFAULT_KEY_ID",
    "DEFAULT_SECRET",
    "Account",
    "Asset",
    "FakeAlpaca",
    "Fault",
    "Order",
    "RecordedRequest",
]
