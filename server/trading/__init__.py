"""The trading domain: orders, their state machine, positions and P&L, risk checks.

Pure and synchronous (no I/O): the order service validates requests and checks risk
with it, folds broker events into order state and fills into the account, and rebuilds
both from the ledger at start-up. ``docs/trading.md`` is the design note.

- ``money``: decimals, the Rule 612 increments, feed-float conversion, cents.
- ``model``: ``OrderSpec``, ``OrderRequest``, ``Order``, ``build_orders`` and the enums.
- ``validation``: ``parse_order(document)`` -> ``OrderRequest``.
- ``errors``: the trading error tree (``extensions.code`` for clients).
- ``states``: the transition table and ``next_status``.
- ``events``: ``OrderEvent``, ``Fill``, ``Reason`` (what brokers report).
- ``lifecycle``: ``OrderState``, ``fold_order``.
- ``positions``, ``account``: positions and the account from fills; ``fold_account``.
- ``calendar``, ``timing``: New York sessions and when an order may work.
- ``risk``: the pre-trade checks, ``check_order``.
- ``performance``: time-weighted return, drawdown, round trips, win rate, equity curve.
"""
