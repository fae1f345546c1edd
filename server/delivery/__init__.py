"""From the ingest to every subscriber: bus, hub, multiplexed groups, outboxes.

- ``bus``: the ``Bus`` port and the in-process adapter (topics ``Q.AMZN``, ``T.AMZN``...).
- ``hub``: ``MarketHub``, one bus subscription per topic with local subscribers;
  reference-counted interest drives upstream subscribe/unsubscribe.
- ``multiplex``: subscriptions with the same document, variables and scope form one
  ``Group``, which executes and encodes each event once.
- ``outbox``: one connection's pending messages: conflating and bounded lanes, flushed
  once per loop turn. Where backpressure stops.
- ``registry``: the live streams of this process, for metrics and tests.
- ``firings``: fired alerts, written to PostgreSQL first, then published to their owner.

Synchronous on the hot path; ``multiplex``, ``outbox`` and ``firings`` schedule work on
the event loop.
"""
