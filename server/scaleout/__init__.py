"""Several processes, one market: which process does what, and how the others reach it.

One process, the *leader* (it holds the Redis lease ``feed``), runs everything that
keeps state: the upstream feed, bars, indicators, alert evaluation, the order book and
the paper broker, analyses. Every process, the leader included, serves market
subscriptions and queries from its own copy of the market (fed by the Redis bus) and
accounts from PostgreSQL; a *follower* relays every other operation to the leader
(``relay_http``, ``relay_ws``), so each piece of state has one writer.
"""
