"""Who is calling: the identity every authenticated request carries.

Kept apart from the modules that produce it (access tokens, API keys) so that resolvers
and the WebSocket layer can depend on this small module alone.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TypeAlias, get_args

Tier: TypeAlias = Literal["free", "pro", "elite"]
#: "full": a logged-in user (any operation); API keys are limited to "read" or "trading".
Scope: TypeAlias = Literal["full", "read", "trading"]
ApiKeyScope: TypeAlias = Literal["read", "trading"]
Via: TypeAlias = Literal["token", "api_key"]

TIERS: tuple[Tier, ...] = get_args(Tier)
SCOPES: tuple[Scope, ...] = get_args(Scope)
API_KEY_SCOPES: tuple[ApiKeyScope, ...] = get_args(ApiKeyScope)


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: uuid.UUID
    tier: Tier
    is_admin: bool
    scope: Scope
    #: When the access token stops being valid (a WebSocket closes then); ``None`` for an
    #: API key, which is valid until revoked.
    token_expires_at: datetime | None
    via: Via
    #: The session an access token belongs to (its refresh-token family).
    session_id: uuid.UUID | None = None
    #: The API key presented, for a key.
    api_key_id: uuid.UUID | None = None
    #: The account's token generation the access token was issued under.
    generation: int | None = None

    @property
    def can_trade(self) -> bool:
        """Whether this identity may place or cancel orders."""
        return self.scope in ("full", "trading")

    @property
    def can_manage_account(self) -> bool:
        """Whether this identity may change the password, API keys, etc. (only a login:
        a leaked API key must not be able to mint more keys or lock the owner out)."""
        return self.scope == "full"
