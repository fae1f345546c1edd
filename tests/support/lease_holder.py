"""A process that campaigns for a lease and prints its role changes, for tests that
kill a leader with SIGKILL: ``python -m tests.support.lease_holder URL NAME TTL_MS``.

Prints ``elected <fence>`` and ``demoted`` lines, flushed at once.
"""

from __future__ import annotations

import asyncio
import sys

from redis.asyncio import Redis

from server.delivery.leadership import LeaderElection, Lease


async def main(url: str, name: str, ttl_ms: int) -> None:
    redis = Redis.from_url(url)
    election = LeaderElection(
        Lease(redis, name, ttl_ms),
        on_elected=lambda fence: print(f"elected {fence}", flush=True),
        on_demoted=lambda: print("demoted", flush=True),
        retry_s=0.1,
    )
    election.start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
