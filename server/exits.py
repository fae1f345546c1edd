"""The exit statuses of ``tickgraph serve``, documented in ``--help`` and the README.

A module of its own so that the command line can show them without importing the
server (which takes the better part of a second)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_LISTEN = 3
EXIT_STARTUP = 4

EXIT_STATUSES = """\
exit status:
  0  stopped cleanly (SIGINT or SIGTERM)
  2  invalid configuration or command line (one line per problem)
  3  cannot listen on the address (port in use, not an address of this machine, ...)
  4  a part could not start (database, keys, data directory, market data)"""
