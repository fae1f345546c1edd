"""Closed bars from the past: indicator warm-up and backfill of gaps in the live bars.

- ``provider``: the ``HistoryProvider`` port, the bucket arithmetic every provider
  shares, and ``ChainedHistory`` (ask each provider in turn).
- ``stored``: our own ``bars`` table (PostgreSQL).
- ``polygon``: Polygon's aggregates REST endpoint, bounded (deadline, concurrency cap).
- ``simulated``: deterministic history that ends where the simulated market starts.

The providers do I/O (``provider`` itself is pure).
"""
