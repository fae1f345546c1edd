"""A user row straight in the database, for tests and benchmarks below the API."""

from __future__ import annotations

import uuid
from typing import Any

#: A well-formed Argon2id PHC string (the column's check wants one); no password opens it.
UNUSABLE_HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"


async def insert_user(pool: Any) -> uuid.UUID:
    user_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO users (id, email, email_normalized, password_hash) VALUES ($1, $2, $2, $3)",
        user_id,
        f"{user_id.hex[:12]}@example.com",
        UNUSABLE_HASH,
    )
    return user_id
