"""The use cases behind the API, and the container that hands them to resolvers.

- ``container``: ``Services``, everything a request or subscription needs, built once by
  the composition root (``server.runtime``).
- ``alerts``: ``AlertService``: validate, store, arm; keeps the engine and the database
  in step.

These modules do I/O (PostgreSQL, the bus); the rules they apply are pure and live in
their own packages (``server.alerts``, ``server.market``, ``server.indicators``).
"""
