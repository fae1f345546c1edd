"""Orders, positions and P&L: the I/O half of trading (the pure half is ``server.trading``).

- ``book``: open orders and accounts in memory, folded from broker events.
- ``ledger``: the group-commit writer of the ledger; publishes ``orders.<user>``.
- ``service``: place, replace, cancel, close; reads.
- ``market``: prices for the checks and marks for positions.
- ``restore``: the start-up rebuild from the ledger, and the outbox re-issued.
- ``paper``: the paper broker fed by the feed and a clock (``PaperFeed``).
"""
