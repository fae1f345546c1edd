"""Errors of the identity layer, each with a stable ``code`` clients branch on.

Messages are written for the person at the keyboard, but never say more than an
attacker may learn: a failed login does not say whether the email exists, a rejected
token does not say which check failed beyond "expired" versus "invalid".
"""

from __future__ import annotations

from server.errors import InvalidInput, TickgraphError


class Unauthenticated(TickgraphError):
    """No valid identity: a missing, malformed, forged, expired or revoked credential.

    ``extensions.reason`` is one of a few stable values (``TOKEN_EXPIRED`` tells a client
    to refresh; anything else means logging in again).
    """

    code = "UNAUTHENTICATED"


class InvalidCredentials(Unauthenticated):
    """Wrong email or password. Deliberately the same error for both."""

    code = "INVALID_CREDENTIALS"


class Forbidden(TickgraphError):
    """Authenticated, but not allowed to do this (not an admin, a read-only API key...)."""

    code = "FORBIDDEN"


class EmailTaken(InvalidInput):
    code = "EMAIL_TAKEN"


class InvalidEmail(InvalidInput):
    code = "INVALID_EMAIL"


class InvalidPassword(InvalidInput):
    """A new password does not meet the policy (server.auth.passwords)."""

    code = "WEAK_PASSWORD"


class UserNotFound(InvalidInput):
    code = "USER_NOT_FOUND"


class KeyRingError(TickgraphError):
    """The JWT signing keys cannot be loaded or created (a start-up configuration error).

    Messages name the source (variable or file) but never contain key material.
    """

    code = "JWT_KEYS_INVALID"
