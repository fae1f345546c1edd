"""``tickgraph serve`` for the orders benchmark: the elite tier's request and order
rates raised so that the benchmark measures the server, not the tier.

    python -m loadtests.orders_bench_server serve --port 0

At the shipped limits (elite: 300 orders/min with a burst of 60 per user) ~1,000 orders
a second would need ~200 users; with them raised, a handful of users (one token each)
carry the load and every order still goes through the same rate-limit checks, risk
checks, transaction and broker. Nothing else about the server is changed.
"""

from __future__ import annotations

import dataclasses
import sys

from server.cli import main
from server.limits import tiers

#: Far above what one machine can place: the limiter still runs, it never refuses.
UNLIMITED_PER_MINUTE = 60_000_000
UNLIMITED_BURST = 1_000_000


def raise_elite_limits() -> None:
    tiers._BY_TIER[tiers.Tier.ELITE] = dataclasses.replace(  # the one table of limits
        tiers.ELITE,
        requests_per_minute=UNLIMITED_PER_MINUTE,
        burst=UNLIMITED_BURST,
        orders_per_minute=UNLIMITED_PER_MINUTE,
        order_burst=UNLIMITED_BURST,
    )


if __name__ == "__main__":
    raise_elite_limits()
    sys.exit(main(sys.argv[1:]))
