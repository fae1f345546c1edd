"""Secrets sealed at rest: they open only with the key and the row they were sealed for."""

from __future__ import annotations

import base64
import os

import pytest

from server.auth.sealing import SealError, SecretBox


def _box() -> SecretBox:
    return SecretBox(base64.b64encode(os.urandom(32)).decode())


def test_a_sealed_secret_opens_only_for_its_row_and_key() -> None:
    box = _box()
    sealed = box.seal("s3cret-value", b"owner-a/KEY")
    assert b"s3cret-value" not in sealed
    assert box.open(sealed, b"owner-a/KEY") == "s3cret-value"
    assert box.seal("s3cret-value", b"owner-a/KEY") != sealed  # a fresh nonce each time
    with pytest.raises(SealError):
        box.open(sealed, b"owner-b/KEY")
    with pytest.raises(SealError):
        _box().open(sealed, b"owner-a/KEY")
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(SealError):
        box.open(tampered, b"owner-a/KEY")
    assert "s3cret" not in repr(box)
