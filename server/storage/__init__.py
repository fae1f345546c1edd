"""Everything that touches PostgreSQL, and nothing else.

- ``database``: the asyncpg pool on the embedded or an external server.
- ``embedded_postgres``: a real PostgreSQL from the ``pgserver`` wheel, shared safely by
  several processes on one data directory.
- ``migrations``: versioned SQL files (beside the module) applied once, in order.
- ``bars``, ``alerts``, ``symbols``: the stores (persist and read back; no rules).

Identity storage (users, refresh tokens, API keys) lives with the rules it serves in
``server.auth``.
"""
