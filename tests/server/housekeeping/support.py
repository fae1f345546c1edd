"""Helpers shared by the housekeeping tests."""

from __future__ import annotations

import os
import uuid
from typing import Any

from tests.support.users import insert_user


async def insert_refresh_token(pool: Any, *, expired_days_ago: float) -> uuid.UUID:
    """A refresh token row that expired ``expired_days_ago`` days ago (negative: valid)."""
    user_id = await insert_user(pool)
    token_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, expires_at) "
        "VALUES ($1, $2, $3, $4, now() - make_interval(secs => $5))",
        token_id,
        user_id,
        uuid.uuid4(),
        os.urandom(32),
        expired_days_ago * 86_400.0,
    )
    return token_id


async def token_exists(pool: Any, token_id: uuid.UUID) -> bool:
    return bool(await pool.fetchval("SELECT count(*) FROM refresh_tokens WHERE id = $1", token_id))
