"""Access tokens: short-lived JWTs signed with Ed25519 keys from a ``KeyRing``.

Tokens
------
EdDSA (Ed25519) only, pinned on both sides: the header's ``alg`` is never trusted to pick
the verification method, so "none" and HMAC-with-the-public-key forgeries fail. Every
token names its key in the ``kid`` header; ``iss``, ``aud``, ``sub``, ``iat`` and ``exp``
are required and checked, with a few seconds of leeway for clock skew between processes.
Verification is stateless (no database read on the hot path), which is why tokens are
short-lived (15 minutes by default): a tier change, a demotion or a password change
reaches an access token within that window, and refresh tokens (server.auth.refresh) are
what get revoked.

Keys
----
A ``KeyRing`` holds one active signing key and older keys kept for verification only, so
the signing key can be rotated without invalidating the tokens already handed out: keep
the previous key in the ring for at least one access-token lifetime after rotating.

- ``TICKGRAPH_JWT_PRIVATE_KEYS`` (several hosts): one or more PEM blocks, the first a
  private key (the active one), the others private or public keys (verification only).
  Rotate in two deploys: add the new key second (everyone can verify it), then move it
  first (everyone signs with it) and keep the old one second until its tokens expired.
- Otherwise a file in the data directory (one host): created on first start with mode
  0600, atomically (written aside, then hard-linked into place, which fails rather than
  overwrites if another process got there first: every process ends up with the same
  key). ``rotate_key_file`` puts a new key first; a process that meets a token signed by
  a key it does not know re-reads the file (at most every few seconds), so processes on
  the host agree without a restart.

Key ids are RFC 7638 JWK thumbprints, so every process derives the same ``kid`` from the
same key without coordination.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import secrets
import stat
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from server.auth.errors import KeyRingError, Unauthenticated
from server.auth.principal import SCOPES, TIERS, Scope, Tier
from server.settings import Secret

logger = logging.getLogger(__name__)

ALGORITHM = "EdDSA"
ISSUER = "tickgraph"
AUDIENCE = "tickgraph-api"
DEFAULT_ACCESS_TOKEN_TTL = timedelta(minutes=15)
DEFAULT_LEEWAY_S = 5.0
#: Far above any token we issue (~400 bytes); refuses to parse megabytes of base64.
MAX_TOKEN_LENGTH = 4096
REQUIRED_CLAIMS = ("exp", "iat", "sub", "iss", "aud", "sid", "gen")

#: The key file's name in the data directory.
KEY_FILE_NAME = "jwt-signing-keys.pem"
#: How often (at most) a process re-reads the key file when it meets an unknown ``kid``:
#: keeps tokens with random kids from turning into a file read per request.
DEFAULT_RELOAD_INTERVAL_S = 5.0
DEFAULT_KEEP_PREVIOUS = 2

_PEM_BLOCK = re.compile(
    r"-----BEGIN (?P<label>[A-Z0-9 ]+)-----\s.*?-----END (?P=label)-----", re.DOTALL
)

#: Reasons in ``Unauthenticated.extensions["reason"]``.
TOKEN_EXPIRED = "TOKEN_EXPIRED"
INVALID_TOKEN = "INVALID_TOKEN"


def kid_of(public_key: Ed25519PublicKey) -> str:
    """The RFC 7638 thumbprint of ``public_key`` (base64url SHA-256 of its canonical JWK)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class _Entry:
    kid: str
    public: Ed25519PublicKey
    private: Ed25519PrivateKey | None


class KeyRing:
    """The active Ed25519 signing key plus older keys that still verify.

    ``keys[0]`` must be a private key (it signs); the others may be private or public.
    A ring loaded with ``from_file``/``load_or_create`` re-reads its file when asked for
    a key id it does not know (rate-limited), to follow a rotation done by another process.
    """

    def __init__(
        self,
        keys: Sequence[Ed25519PrivateKey | Ed25519PublicKey],
        *,
        source: Path | None = None,
        reload_interval_s: float = DEFAULT_RELOAD_INTERVAL_S,
    ) -> None:
        self._entries = _entries(keys)
        self.source = source
        self.reload_interval_s = reload_interval_s
        self._last_reload = time.monotonic()
        self._last_stat = self._last_reload
        self._file_version = _file_version(source)

    @classmethod
    def generate(cls) -> KeyRing:
        return cls([Ed25519PrivateKey.generate()])

    @classmethod
    def from_pem(cls, text: str, *, origin: str = "PEM text") -> KeyRing:
        """Parse one or more PEM blocks (first: the active private key).

        ``origin`` names the source in error messages (e.g. the variable name). Literal
        ``\\n`` sequences are accepted in place of line breaks, as some env-file formats
        cannot hold multi-line values.
        """
        return cls(_parse_pem(text, origin))

    @classmethod
    def from_file(
        cls, path: Path, *, reload_interval_s: float = DEFAULT_RELOAD_INTERVAL_S
    ) -> KeyRing:
        """Load ``path``; ``KeyRingError`` if it is missing, unreadable or malformed."""
        return cls(_read_key_file(path), source=path, reload_interval_s=reload_interval_s)

    @classmethod
    def load_or_create(
        cls, path: Path, *, reload_interval_s: float = DEFAULT_RELOAD_INTERVAL_S
    ) -> KeyRing:
        """Load the key file, creating it (with a new key, mode 0600) if it does not exist.

        Safe when several processes start at once: exactly one file is created and every
        process loads that one.
        """
        if not path.exists():
            try:
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            except OSError as exc:
                raise KeyRingError(
                    f"cannot create the directory {path.parent} for the JWT signing keys: "
                    f"{exc.strerror or exc}"
                ) from None
            _create_exclusive(path, _to_pem([_entry(Ed25519PrivateKey.generate())]))
        # A process that lost the race may find the winner's file still being written
        # (only on file systems without hard links); give it a moment.
        deadline = time.monotonic() + 2.0
        while True:
            try:
                return cls.from_file(path, reload_interval_s=reload_interval_s)
            except KeyRingError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)

    @property
    def active_kid(self) -> str:
        return self._entries[0].kid

    @property
    def kids(self) -> tuple[str, ...]:
        """Every key id that verifies, the active one first."""
        return tuple(e.kid for e in self._entries)

    def signing_key(self) -> tuple[str, Ed25519PrivateKey]:
        """The active key. A ring read from a file follows it: when the file changed (a
        rotation by the housekeeping of any process on the host), it is re-read, at most
        one ``stat`` per ``reload_interval_s``, so every process signs with the new key
        within seconds and never keeps signing with a key rotated out of the file."""
        if self.source is not None:
            now = time.monotonic()
            if now - self._last_stat >= self.reload_interval_s:
                self._last_stat = now
                if _file_version(self.source) != self._file_version:
                    self.reload()
        entry = self._entries[0]
        assert entry.private is not None  # guaranteed by _entries()
        return entry.kid, entry.private

    def verification_key(self, kid: str) -> Ed25519PublicKey | None:
        """The public key named ``kid``, or ``None``. May re-read the key file (see class)."""
        found = self._find(kid)
        if found is None and self._reload_due():
            self.reload()
            found = self._find(kid)
        return found

    def reload(self) -> bool:
        """Re-read the source file now; whether the keys changed. Errors are logged and the
        current keys kept: a half-edited file must not lock everyone out."""
        if self.source is None:
            return False
        self._last_reload = time.monotonic()
        version = _file_version(self.source)
        try:
            entries = _entries(_read_key_file(self.source))
        except KeyRingError as exc:
            logger.warning("keeping the current JWT keys: %s", exc)
            return False
        changed = [e.kid for e in entries] != list(self.kids)
        if changed:
            logger.info(
                "JWT keys reloaded from %s: active key %s, %d verification key(s)",
                self.source,
                entries[0].kid,
                len(entries) - 1,
            )
        self._entries = entries
        self._file_version = version
        return changed

    def rotated(
        self,
        new_key: Ed25519PrivateKey | None = None,
        *,
        keep_previous: int = DEFAULT_KEEP_PREVIOUS,
    ) -> KeyRing:
        """A ring whose active key is ``new_key`` (default: a new one), keeping the newest
        ``keep_previous`` current keys for verification."""
        if keep_previous < 0:
            raise ValueError("keep_previous must not be negative")
        new = new_key if new_key is not None else Ed25519PrivateKey.generate()
        kept = [e.public for e in self._entries[:keep_previous]]
        return KeyRing([new, *kept], source=self.source, reload_interval_s=self.reload_interval_s)

    def to_pem(self) -> str:
        """The active private key, then the verification keys as public keys."""
        return _to_pem(self._entries)

    def _find(self, kid: str) -> Ed25519PublicKey | None:
        for entry in self._entries:
            if entry.kid == kid:
                return entry.public
        return None

    def _reload_due(self) -> bool:
        return (
            self.source is not None
            and time.monotonic() - self._last_reload >= self.reload_interval_s
        )


def _file_version(path: Path | None) -> tuple[int, int, int] | None:
    """What changes when the file is replaced or rewritten (inode, size, mtime)."""
    if path is None:
        return None
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def load_keyring(private_keys: Secret | None, data_dir: Path) -> KeyRing:
    """The ring the server runs with: the PEM keys of ``TICKGRAPH_JWT_PRIVATE_KEYS`` when
    set, otherwise the key file in ``data_dir`` (created on first use)."""
    if private_keys is not None:
        return KeyRing.from_pem(private_keys.reveal(), origin="TICKGRAPH_JWT_PRIVATE_KEYS")
    return KeyRing.load_or_create(data_dir / KEY_FILE_NAME)


def rotate_key_file(path: Path, *, keep_previous: int = DEFAULT_KEEP_PREVIOUS) -> KeyRing:
    """Put a new active key into the key file, keeping ``keep_previous`` older keys.

    The file is replaced atomically (readers see the old or the new file, never a mix).
    Other processes pick the new key up when they first meet a token it signed, or on
    restart; until then they keep signing with the old key, which stays verifiable.
    """
    ring = KeyRing.from_file(path).rotated(keep_previous=keep_previous)
    tmp = _temp_path(path)
    try:
        _write_private_file(tmp, ring.to_pem())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return KeyRing.from_file(path, reload_interval_s=ring.reload_interval_s)


@dataclass(frozen=True, slots=True)
class IssuedAccessToken:
    token: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """The verified content of an access token."""

    user_id: uuid.UUID
    tier: Tier
    scope: Scope
    is_admin: bool
    issued_at: datetime
    expires_at: datetime
    kid: str
    #: The session (refresh-token family) the token belongs to: logging that session
    #: out ends the token too.
    session_id: uuid.UUID
    #: The account's token generation when the token was issued: "log out everywhere"
    #: and a password change move the generation on, which ends every older token.
    generation: int


#: Verified access tokens remembered (about 1 KiB each).
VERIFIED_CACHE = 10_000


class AccessTokens:
    """Issues and verifies access tokens with the keys of ``keyring``."""

    def __init__(
        self,
        keyring: KeyRing,
        *,
        ttl: timedelta = DEFAULT_ACCESS_TOKEN_TTL,
        leeway_s: float = DEFAULT_LEEWAY_S,
    ) -> None:
        if ttl <= timedelta(0):
            raise ValueError("the access token lifetime must be positive")
        self.keyring = keyring
        self.ttl = ttl
        self.leeway_s = leeway_s
        # Tokens whose signature was verified, by their exact text: an Ed25519 check is
        # about a tenth of a small request's CPU, and a client sends the same token
        # with every request until it expires. A forged token never gets in; expiry and
        # the key still being in the keyring are checked on every use.
        self._verified: OrderedDict[str, AccessClaims] = OrderedDict()

    def issue(
        self,
        *,
        user_id: uuid.UUID,
        tier: Tier,
        scope: Scope = "full",
        is_admin: bool = False,
        session_id: uuid.UUID | None = None,
        generation: int = 0,
    ) -> IssuedAccessToken:
        issued_at = int(time.time())
        expires_at = issued_at + max(1, int(self.ttl.total_seconds()))
        payload: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": str(user_id),
            "iat": issued_at,
            "exp": expires_at,
            # Unique per token: lets a future deny-list name one token.
            "jti": uuid.uuid4().hex,
            "tier": tier,
            "scope": scope,
            "adm": is_admin,
            "sid": str(session_id or uuid.uuid4()),
            "gen": generation,
        }
        kid, key = self.keyring.signing_key()
        token = jwt.encode(payload, key, algorithm=ALGORITHM, headers={"kid": kid})
        return IssuedAccessToken(token, datetime.fromtimestamp(expires_at, UTC))

    def decode(self, token: str) -> AccessClaims:
        """Verify ``token``; ``Unauthenticated`` ("token expired" / "invalid token") if not.

        The precise cause is logged at DEBUG level for operators, never returned.
        """
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
            raise _invalid("empty, oversized or not a string")
        known = self._verified.get(token)
        if known is not None:
            if self.keyring.verification_key(known.kid) is not None:
                if time.time() > known.expires_at.timestamp() + self.leeway_s:
                    del self._verified[token]
                    raise Unauthenticated("token expired", reason=TOKEN_EXPIRED)
                self._verified.move_to_end(token)
                return known
            del self._verified[token]  # its key was retired: verify again (and fail)
        claims = self._verify(token)
        self._verified[token] = claims
        if len(self._verified) > VERIFIED_CACHE:
            self._verified.popitem(last=False)
        return claims

    def _verify(self, token: str) -> AccessClaims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise _invalid(f"unreadable header: {exc}") from None
        kid = header.get("kid")
        # Checked here as well as by decode(algorithms=[...]): the header must not get to
        # choose how the token is verified.
        if header.get("alg") != ALGORITHM:
            raise _invalid(f"algorithm {header.get('alg')!r} is not {ALGORITHM}")
        if not isinstance(kid, str):
            raise _invalid("no kid header")
        key = self.keyring.verification_key(kid)
        if key is None:
            raise _invalid(f"unknown kid {kid[:64]!r}")
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                leeway=self.leeway_s,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired", reason=TOKEN_EXPIRED) from None
        except jwt.InvalidTokenError as exc:
            raise _invalid(f"{type(exc).__name__}: {exc}") from None
        return _claims(payload, kid)


def _claims(payload: dict[str, Any], kid: str) -> AccessClaims:
    try:
        user_id = uuid.UUID(payload["sub"])
    except (ValueError, TypeError, AttributeError):
        raise _invalid("sub is not a user id") from None
    tier = payload.get("tier")
    scope = payload.get("scope")
    is_admin = payload.get("adm", False)
    if tier not in TIERS:
        raise _invalid("unknown tier")
    if scope not in SCOPES:
        raise _invalid("unknown scope")
    if not isinstance(is_admin, bool):
        raise _invalid("adm is not a boolean")
    try:
        session_id = uuid.UUID(payload["sid"])
    except (ValueError, TypeError, AttributeError):
        raise _invalid("sid is not a session id") from None
    generation = payload["gen"]
    if not isinstance(generation, int) or isinstance(generation, bool) or generation < 0:
        raise _invalid("gen is not a generation")
    return AccessClaims(
        user_id=user_id,
        tier=cast(Tier, tier),
        scope=cast(Scope, scope),
        is_admin=is_admin,
        issued_at=datetime.fromtimestamp(int(payload["iat"]), UTC),
        expires_at=datetime.fromtimestamp(int(payload["exp"]), UTC),
        kid=kid,
        session_id=session_id,
        generation=generation,
    )


def _invalid(why: str) -> Unauthenticated:
    logger.debug("access token rejected: %s", why)
    return Unauthenticated("invalid token", reason=INVALID_TOKEN)


def _entry(key: Ed25519PrivateKey | Ed25519PublicKey) -> _Entry:
    if isinstance(key, Ed25519PrivateKey):
        public = key.public_key()
        return _Entry(kid_of(public), public, key)
    return _Entry(kid_of(key), key, None)


def _entries(keys: Sequence[Ed25519PrivateKey | Ed25519PublicKey]) -> tuple[_Entry, ...]:
    if not keys:
        raise KeyRingError("a key ring needs at least one key")
    entries: list[_Entry] = []
    for key in keys:
        if not isinstance(key, Ed25519PrivateKey | Ed25519PublicKey):
            raise KeyRingError(f"only Ed25519 keys are supported, not {type(key).__name__}")
        entry = _entry(key)
        if all(e.kid != entry.kid for e in entries):
            entries.append(entry)
    if entries[0].private is None:
        raise KeyRingError("the first (active) key must be a private key: it signs tokens")
    return tuple(entries)


def _parse_pem(text: str, origin: str) -> list[Ed25519PrivateKey | Ed25519PublicKey]:
    if "\n" not in text and "\\n" in text:
        text = text.replace("\\n", "\n")
    blocks = list(_PEM_BLOCK.finditer(text))
    if not blocks:
        raise KeyRingError(
            f"{origin}: no PEM block found (expected '-----BEGIN PRIVATE KEY-----' ...)"
        )
    keys: list[Ed25519PrivateKey | Ed25519PublicKey] = []
    for number, block in enumerate(blocks, start=1):
        label = block.group("label")
        data = block.group(0).encode()
        try:
            if label == "PRIVATE KEY":
                key: object = serialization.load_pem_private_key(data, password=None)
            elif label == "PUBLIC KEY":
                key = serialization.load_pem_public_key(data)
            else:
                raise KeyRingError(
                    f"{origin}: PEM block {number} is a {label!r}; expected 'PRIVATE KEY' "
                    "(PKCS#8) or 'PUBLIC KEY'"
                )
        except (ValueError, TypeError) as exc:
            # The library's message does not contain key material, only what is wrong.
            raise KeyRingError(f"{origin}: PEM block {number} cannot be read: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey | Ed25519PublicKey):
            raise KeyRingError(
                f"{origin}: PEM block {number} is a {type(key).__name__}; only Ed25519 keys "
                "are accepted (openssl genpkey -algorithm ed25519)"
            )
        keys.append(key)
    if not isinstance(keys[0], Ed25519PrivateKey):
        raise KeyRingError(f"{origin}: the first PEM block must be the active private key")
    return keys


def _to_pem(entries: Sequence[_Entry]) -> str:
    parts: list[bytes] = []
    for index, entry in enumerate(entries):
        if index == 0:
            assert entry.private is not None
            parts.append(
                entry.private.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        else:
            # Older keys only verify; there is no reason to keep their private halves.
            parts.append(
                entry.public.public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            )
    return b"".join(parts).decode()


def _read_key_file(path: Path) -> list[Ed25519PrivateKey | Ed25519PublicKey]:
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise KeyRingError(f"cannot read the JWT key file {path}: {reason}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning(
            "the JWT key file %s is accessible to other users (mode %o); run chmod 600 on it",
            path,
            stat.S_IMODE(mode),
        )
    return _parse_pem(text, str(path))


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _write_private_file(path: Path, text: str) -> None:
    """Create ``path`` (must not exist) with mode 0600, write ``text`` and flush to disk."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        # The umask can only remove bits, but be explicit about the result.
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_exclusive(path: Path, text: str) -> None:
    """Create ``path`` with ``text`` unless it exists; never replaces an existing file.

    The content is written to a temporary file and hard-linked into place: ``link`` fails
    if the target exists, so of several processes racing exactly one wins, and readers
    never see a partly written file. Where hard links are not supported, the file is
    created in place with O_EXCL (same exclusivity; a reader may briefly see it partly
    written, which ``load_or_create`` waits out).
    """
    tmp = _temp_path(path)
    try:
        _write_private_file(tmp, text)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return  # another process created it first: use theirs
        except OSError:
            try:
                _write_private_file(path, text)
            except FileExistsError:
                return
    except OSError as exc:
        raise KeyRingError(
            f"cannot create the JWT key file {path}: {exc.strerror or exc}"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    logger.info("created a new JWT signing key in %s", path)


def _fsync_dir(directory: Path) -> None:
    """Make a new directory entry durable (best effort: not every platform allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
