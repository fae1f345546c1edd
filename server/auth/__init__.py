"""Identity: accounts, passwords, access and refresh tokens, API keys, audit log.

- ``server.auth.users.UserService``: every account and session operation.
- ``server.auth.tokens``: JWT access tokens and the Ed25519 ``KeyRing``.
- ``server.auth.passwords``: password policy and Argon2id hashing off the event loop.
- ``server.auth.refresh`` / ``server.auth.api_keys`` / ``server.auth.audit``: storage.
- ``server.auth.principal.Principal``: who is calling, as resolvers see it.
"""

from __future__ import annotations

from server.auth.api_keys import ApiKey, CreatedApiKey
from server.auth.errors import (
    EmailTaken,
    Forbidden,
    InvalidCredentials,
    InvalidEmail,
    InvalidPassword,
    KeyRingError,
    Unauthenticated,
    UserNotFound,
)
from server.auth.passwords import PasswordHashing
from server.auth.principal import Principal, Scope, Tier
from server.auth.tokens import AccessTokens, KeyRing, load_keyring, rotate_key_file
from server.auth.users import AuthSettings, TokenPair, User, UserService

__all__ = [
    "AccessTokens",
    "ApiKey",
    "AuthSettings",
    "CreatedApiKey",
    "EmailTaken",
    "Forbidden",
    "InvalidCredentials",
    "InvalidEmail",
    "InvalidPassword",
    "KeyRing",
    "KeyRingError",
    "PasswordHashing",
    "Principal",
    "Scope",
    "Tier",
    "TokenPair",
    "Unauthenticated",
    "User",
    "UserNotFound",
    "UserService",
    "load_keyring",
    "rotate_key_file",
]
