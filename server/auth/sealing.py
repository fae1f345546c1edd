"""Secrets at rest: AES-256-GCM (``cryptography``) under ``TICKGRAPH_SECRETS_KEY``.

A sealed value is ``version (1 byte) | nonce (12 random bytes) | ciphertext+tag``. The
associated data binds it to its row (the owner and the key id): a ciphertext copied to
another user's row, or an edited key id, does not open. Opening with the wrong key or
a tampered value raises ``SealError``, which says nothing about the value.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = b"\x01"


class SealError(Exception):
    pass


class SecretBox:
    def __init__(self, key_b64: str) -> None:
        key = base64.b64decode(key_b64, validate=True)
        if len(key) != 32:
            raise ValueError("the secrets key must be 32 bytes")
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "SecretBox(***)"

    def seal(self, plaintext: str, context: bytes) -> bytes:
        nonce = os.urandom(12)
        return VERSION + nonce + self._aead.encrypt(nonce, plaintext.encode(), context)

    def open(self, sealed: bytes, context: bytes) -> str:
        if len(sealed) < 1 + 12 + 16 or sealed[:1] != VERSION:
            raise SealError("not a sealed value of a known version")
        try:
            return self._aead.decrypt(sealed[1:13], sealed[13:], context).decode()
        except InvalidTag:
            raise SealError("the value does not open with this key") from None
