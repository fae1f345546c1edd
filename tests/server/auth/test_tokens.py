"""Access tokens and the key ring: what verifies, every forgery that must not, rotation,
and the key file shared by the processes of one host."""

from __future__ import annotations

import hashlib
import hmac
import logging
import stat
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key

from server.auth.errors import KeyRingError, Unauthenticated
from server.auth.tokens import (
    INVALID_TOKEN,
    KEY_FILE_NAME,
    TOKEN_EXPIRED,
    AccessTokens,
    KeyRing,
    kid_of,
    load_keyring,
    rotate_key_file,
)
from server.settings import Secret
from tests.server.auth.helpers import b64url, eddsa, forge, valid_claims


def private_pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def public_pem(key: Ed25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def rejected(tokens: AccessTokens, token: str) -> dict[str, object]:
    with pytest.raises(Unauthenticated) as info:
        tokens.decode(token)
    assert info.value.code == "UNAUTHENTICATED"
    return info.value.extensions


# -- issuing and verifying -------------------------------------------------------------


def test_round_trip_carries_the_claims() -> None:
    ring = KeyRing.generate()
    tokens = AccessTokens(ring)
    user_id = uuid.uuid4()
    issued = tokens.issue(user_id=user_id, tier="pro", scope="full", is_admin=True)

    claims = tokens.decode(issued.token)
    assert claims.user_id == user_id
    assert (claims.tier, claims.scope, claims.is_admin) == ("pro", "full", True)
    assert claims.expires_at == issued.expires_at
    assert 899 <= (claims.expires_at - claims.issued_at).total_seconds() <= 900
    assert claims.kid == ring.active_kid

    header = jwt.get_unverified_header(issued.token)
    assert header["alg"] == "EdDSA"
    assert header["kid"] == ring.active_kid
    payload = jwt.decode(issued.token, options={"verify_signature": False})
    assert {"sub", "iat", "exp", "iss", "aud", "jti"} <= payload.keys()
    assert (payload["iss"], payload["aud"]) == ("tickgraph", "tickgraph-api")


def test_lifetime_is_configurable() -> None:
    tokens = AccessTokens(KeyRing.generate(), ttl=timedelta(minutes=2))
    claims = tokens.decode(tokens.issue(user_id=uuid.uuid4(), tier="free").token)
    assert (claims.expires_at - claims.issued_at).total_seconds() == 120


def test_the_forging_helper_makes_valid_tokens() -> None:
    """Control for the forgery tests below: a correct hand-made token is accepted, so each
    rejection is caused by the one thing that test changes."""
    ring = KeyRing.generate()
    kid, key = ring.signing_key()
    token = forge({"alg": "EdDSA", "typ": "JWT", "kid": kid}, valid_claims(), eddsa(key))
    assert AccessTokens(ring).decode(token).tier == "free"


def test_forged_tokens_are_rejected() -> None:
    ring = KeyRing.generate()
    tokens = AccessTokens(ring)
    kid, key = ring.signing_key()
    header = {"alg": "EdDSA", "typ": "JWT", "kid": kid}
    public_raw = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    now = int(time.time())
    stranger = Ed25519PrivateKey.generate()

    def hs256(secret: bytes) -> Any:
        return lambda msg: hmac.new(secret, msg, hashlib.sha256).digest()

    forgeries = {
        "alg none": forge({**header, "alg": "none"}, valid_claims(), None),
        "alg None, EdDSA signature kept": forge(
            {**header, "alg": "None"}, valid_claims(), eddsa(key)
        ),
        # Algorithm confusion: an HMAC keyed with what the server uses to verify.
        "HS256 keyed with the raw public key": forge(
            {**header, "alg": "HS256"}, valid_claims(), hs256(public_raw)
        ),
        "HS256 keyed with the PEM public key": forge(
            {**header, "alg": "HS256"}, valid_claims(), hs256(public_pem(key).encode())
        ),
        "wrong audience": forge(header, valid_claims(aud="other-api"), eddsa(key)),
        "wrong issuer": forge(header, valid_claims(iss="evil"), eddsa(key)),
        "missing exp": forge(header, valid_claims(exp=None), eddsa(key)),
        "missing iat": forge(header, valid_claims(iat=None), eddsa(key)),
        "missing sub": forge(header, valid_claims(sub=None), eddsa(key)),
        "missing iss": forge(header, valid_claims(iss=None), eddsa(key)),
        "missing aud": forge(header, valid_claims(aud=None), eddsa(key)),
        "sub not a user id": forge(header, valid_claims(sub="admin"), eddsa(key)),
        "unknown tier": forge(header, valid_claims(tier="platinum"), eddsa(key)),
        "unknown scope": forge(header, valid_claims(scope="root"), eddsa(key)),
        "adm not a boolean": forge(header, valid_claims(adm="yes"), eddsa(key)),
        "issued in the future": forge(
            header, valid_claims(iat=now + 3600, exp=now + 7200), eddsa(key)
        ),
        "unknown kid": forge({**header, "kid": "no-such-key"}, valid_claims(), eddsa(key)),
        "no kid": forge({"alg": "EdDSA", "typ": "JWT"}, valid_claims(), eddsa(key)),
        "kid not a string": forge({**header, "kid": 7}, valid_claims(), eddsa(key)),
        "another key, our kid": forge(header, valid_claims(), eddsa(stranger)),
        "another key, its own kid": forge(
            {**header, "kid": kid_of(stranger.public_key())}, valid_claims(), eddsa(stranger)
        ),
        "garbage": "not.a.token",
        "empty": "",
        "oversized": "a" * 100_000,
    }
    valid = tokens.issue(user_id=uuid.uuid4(), tier="free").token
    head, body, signature = valid.split(".")
    forgeries["payload swapped, signature kept"] = ".".join(
        [head, b64url(b'{"sub":"x","tier":"elite"}'), signature]
    )
    forgeries["signature truncated"] = f"{head}.{body}.{signature[:-4]}"

    for name, token in forgeries.items():
        extensions = rejected(tokens, token)
        assert extensions["reason"] == INVALID_TOKEN, name


def test_expired_token_says_expired_and_leeway_absorbs_small_skew() -> None:
    ring = KeyRing.generate()
    tokens = AccessTokens(ring)
    kid, key = ring.signing_key()
    header = {"alg": "EdDSA", "kid": kid}
    now = int(time.time())

    expired = forge(header, valid_claims(iat=now - 1000, exp=now - 60), eddsa(key))
    with pytest.raises(Unauthenticated, match="token expired") as info:
        tokens.decode(expired)
    assert info.value.extensions["reason"] == TOKEN_EXPIRED

    # Two seconds past exp is within the 5 s leeway for clock skew between processes.
    just_expired = forge(header, valid_claims(iat=now - 100, exp=now - 2), eddsa(key))
    tokens.decode(just_expired)


def test_a_remembered_token_still_expires_and_dies_with_its_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Verified tokens are remembered (a signature check per request is costly), but a
    remembered token is judged again on every use: expiry, and its key still trusted."""
    ring = KeyRing.generate()
    tokens = AccessTokens(ring, ttl=timedelta(seconds=60))
    token = tokens.issue(user_id=uuid.uuid4(), tier="free").token
    assert tokens.decode(token) == tokens.decode(token)  # the second use is remembered
    later = time.time() + 60 + 10
    monkeypatch.setattr("server.auth.tokens.time.time", lambda: later)
    with pytest.raises(Unauthenticated, match="token expired"):
        tokens.decode(token)
    monkeypatch.undo()
    fresh = tokens.issue(user_id=uuid.uuid4(), tier="free").token
    tokens.decode(fresh)
    tokens.keyring = ring.rotated(keep_previous=0)  # the key that signed it is gone
    rejected(tokens, fresh)


# -- rotation ---------------------------------------------------------------------------


def test_rotation_keeps_old_tokens_valid_while_the_old_key_stays() -> None:
    ring1 = KeyRing.generate()
    old_token = AccessTokens(ring1).issue(user_id=uuid.uuid4(), tier="free").token

    ring2 = ring1.rotated()
    assert ring2.active_kid != ring1.active_kid
    assert ring2.kids == (ring2.active_kid, ring1.active_kid)
    tokens2 = AccessTokens(ring2)
    new_token = tokens2.issue(user_id=uuid.uuid4(), tier="free").token
    assert jwt.get_unverified_header(new_token)["kid"] == ring2.active_kid
    tokens2.decode(old_token)
    tokens2.decode(new_token)

    # The old ring does not know the new key...
    rejected(AccessTokens(ring1), new_token)
    # ...and once the old key is dropped, its tokens stop working.
    ring3 = ring2.rotated(keep_previous=1)
    assert ring3.kids == (ring3.active_kid, ring2.active_kid)
    rejected(AccessTokens(ring3), old_token)
    AccessTokens(ring3).decode(new_token)


def test_pem_keys_first_is_active_others_verify() -> None:
    new, old, older = (Ed25519PrivateKey.generate() for _ in range(3))
    text = private_pem(new) + private_pem(old) + public_pem(older)
    ring = KeyRing.from_pem(text)
    assert ring.kids == tuple(kid_of(k.public_key()) for k in (new, old, older))
    assert ring.active_kid == kid_of(new.public_key())

    # Tokens of the older keys (made by rings where they were active) verify.
    tokens = AccessTokens(ring)
    for key in (old, older):
        token = AccessTokens(KeyRing([key])).issue(user_id=uuid.uuid4(), tier="free").token
        tokens.decode(token)

    # to_pem keeps the active private key, the others as public keys only.
    again = KeyRing.from_pem(ring.to_pem())
    assert again.kids == ring.kids
    assert ring.to_pem().count("PRIVATE KEY-----") == 2  # BEGIN and END of one block

    # An env file that cannot hold line breaks may carry literal "\n".
    escaped = private_pem(new).replace("\n", "\\n")
    assert KeyRing.from_pem(escaped).active_kid == ring.active_kid


def test_bad_key_material_is_refused_without_echoing_it() -> None:
    key = Ed25519PrivateKey.generate()
    rsa_pem = (
        generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    garbled = private_pem(key).replace("MC4CAQAw", "MC4CAQAx")
    cases = {
        "no PEM at all": "just some text",
        "an RSA key": rsa_pem,
        "public key first": public_pem(key) + private_pem(key),
        "garbled block": garbled,
        "a certificate": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    }
    for name, text in cases.items():
        with pytest.raises(KeyRingError) as info:
            KeyRing.from_pem(text, origin="TICKGRAPH_JWT_PRIVATE_KEYS")
        message = str(info.value)
        assert message.startswith("TICKGRAPH_JWT_PRIVATE_KEYS"), name
        body_lines = [line for line in text.splitlines() if line and "-----" not in line]
        assert not any(line in message for line in body_lines), name


# -- the key file -----------------------------------------------------------------------


def test_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "data" / KEY_FILE_NAME
    ring = KeyRing.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert KeyRing.load_or_create(path).active_kid == ring.active_kid
    assert load_keyring(None, tmp_path / "data").active_kid == ring.active_kid
    # The environment variable wins over the file.
    other = Ed25519PrivateKey.generate()
    from_env = load_keyring(Secret(private_pem(other)), tmp_path / "data")
    assert from_env.active_kid == kid_of(other.public_key())


def test_processes_starting_together_share_one_key(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE_NAME
    starters = 8
    barrier = threading.Barrier(starters)
    kids: list[str] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            barrier.wait(10)
            kids.append(KeyRing.load_or_create(path).active_kid)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(starters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert len(kids) == starters
    assert len(set(kids)) == 1
    assert KeyRing.from_file(path).active_kid == kids[0]
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE_NAME]  # no temp files left


def test_rotating_the_file_is_followed_by_other_processes(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE_NAME
    # "Another process": loaded before the rotation, re-reads on an unknown kid.
    other = KeyRing.load_or_create(path, reload_interval_s=0)
    old_kid = other.active_kid
    old_token = AccessTokens(other).issue(user_id=uuid.uuid4(), tier="free").token

    rotated = rotate_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert rotated.kids == (rotated.active_kid, old_kid)
    new_token = AccessTokens(rotated).issue(user_id=uuid.uuid4(), tier="free").token

    AccessTokens(other).decode(new_token)  # unknown kid -> re-read the file -> known
    assert other.active_kid == rotated.active_kid  # and it signs with the new key now
    AccessTokens(other).decode(old_token)


def test_unknown_kids_do_not_reread_the_file_on_every_request(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE_NAME
    ring = KeyRing.load_or_create(path, reload_interval_s=3600)
    rotated = rotate_key_file(path)
    token = AccessTokens(rotated).issue(user_id=uuid.uuid4(), tier="free").token
    rejected(AccessTokens(ring), token)  # not re-read within the interval
    assert ring.reload()  # an explicit reload picks it up
    AccessTokens(ring).decode(token)


def test_a_broken_file_on_reload_keeps_the_current_keys(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / KEY_FILE_NAME
    ring = KeyRing.load_or_create(path, reload_interval_s=0)
    kid = ring.active_kid
    path.write_text("half-written")
    with caplog.at_level(logging.WARNING, logger="server.auth.tokens"):
        assert not ring.reload()
    assert ring.active_kid == kid
    assert "keeping the current JWT keys" in caplog.text


def test_a_readable_key_file_is_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / KEY_FILE_NAME
    KeyRing.load_or_create(path)
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="server.auth.tokens"):
        KeyRing.from_file(path)
    assert "chmod 600" in caplog.text


def test_missing_or_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KeyRingError, match="cannot read the JWT key file"):
        KeyRing.from_file(tmp_path / "absent.pem")
