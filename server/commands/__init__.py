"""The ``tickgraph`` sub-commands beyond serving: ``doctor``, ``housekeeping``
(``server/cli.py`` registers them)."""
