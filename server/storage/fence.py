"""The leader's fence in PostgreSQL (migration 0010): its connections carry its fencing
token, and the tables only the leader writes refuse a statement whose token is not the
current one.

``claim`` is the first thing a newly elected leader does, before it reads any state:
raising ``core_fence`` waits for the statements of the previous leader that are under
way (they hold the row FOR SHARE) and fails every later one, so what the new leader
rebuilds from is final.
"""

from __future__ import annotations

from typing import Any

from server.storage.database import APPLICATION_NAME, CONNECT_ARGS, Database

#: The SQLSTATE the trigger raises for a deposed writer.
DEPOSED = "TGFNC"

_CLAIM = """
INSERT INTO core_fence AS f (fence, holder) VALUES ($1, $2)
ON CONFLICT (id) DO UPDATE SET fence = excluded.fence, holder = excluded.holder, since = now()
    WHERE f.fence < excluded.fence
RETURNING fence
"""


class Deposed(Exception):
    """Another process has claimed a higher fence: this one no longer leads."""


async def claim(database: Database, fence: int, holder: str) -> None:
    """Make ``fence`` the current one, and every connection of the pool carry it (new
    connections from now on; the ones open now are replaced when next released)."""
    if database.dsn is None:
        raise Deposed("the database is closed")
    pool: Any = database.pool
    pool.set_connect_args(
        database.dsn,
        **CONNECT_ARGS,
        server_settings={"application_name": APPLICATION_NAME, "tickgraph.fence": str(fence)},
    )
    await pool.expire_connections()
    async with pool.acquire() as conn:
        claimed = await conn.fetchval(_CLAIM, fence, holder)
    if claimed is None:
        raise Deposed(f"a newer leader holds the fence (ours is {fence})")
