"""Limits: what each tier may do, and the machinery that enforces it.

- ``tiers``: the numbers per tier (pure).
- ``gcra``: the rate-limit arithmetic, integer microseconds (pure).
- ``limiter``: where the state lives: in this process, or in Redis shared by every
  server process (one atomic Lua script per decision, Redis server time).
- ``login_throttle``: login attempts per IP, per account and per (account, IP).
- ``usage``: concurrent subscriptions and symbols per user, daily counters.
- ``errors``: ``RateLimited`` (``RATE_LIMITED`` with ``retryAfter``) and
  ``LimiterUnavailable``.
"""
