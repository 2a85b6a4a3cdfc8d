"""The installation's signing key and the keys it trusts.

The key is an Ed25519 private key in a PEM file (``SIGNING_KEY_PATH``) that signs checkpoints
(the beat's worker, the command line) and evidence bundles as they are exported (the web
process and the command line read it too). Its public half is recorded in signing_keys the
first time it signs a checkpoint, and published in the API.

Which public keys to *trust* comes from configuration, never from the database (whose
signing_keys table the application itself may insert into): ``AUDIT_TRUSTED_KEYS`` and the key
file's own public half (:func:`installation_trust`).
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)
from sqlmodel import Session, col, select

from services.db.models import SigningKey
from services.domain.errors import Conflict, InvalidRequest
from services.domain.evidence import ALGORITHM, decode_key, key_id, public_bytes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Signer:
    private: Ed25519PrivateKey
    key_id: str
    public_key: str  # base64 of the raw public bytes


def init_key(path: Path, *, replace: bool = False) -> Signer:
    """Make the installation's key at ``path`` (mode 0600); an existing key is kept unless
    ``replace`` (its checkpoints still verify: its public half stays in signing_keys)."""
    if path.exists() and not replace:
        raise Conflict(f"{path} holds a key already; --rotate makes a new one")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(pem)
    os.replace(temporary, path)
    return _signer(private)


def load_signer(path: Path | None) -> Signer | None:
    """The key at ``path``, or None when there is none (checkpoints are then unsigned)."""
    if path is None or not path.exists():
        return None
    try:
        private = load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as error:
        raise InvalidRequest(f"{path} is not a PEM private key: {error}") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise InvalidRequest(f"{path} is not an Ed25519 key")
    return _signer(private)


def _signer(private: Ed25519PrivateKey) -> Signer:
    raw = public_bytes(private.public_key())
    return Signer(private, key_id(raw), base64.b64encode(raw).decode())


def record_key(session: Session, signer: Signer, now: dt.datetime) -> None:
    if session.get(SigningKey, signer.key_id) is None:
        session.add(
            SigningKey(
                key_id=signer.key_id,
                algorithm=ALGORITHM,
                public_key=signer.public_key,
                first_used_at=now,
            )
        )
        session.flush()


def public_keys(session: Session) -> list[SigningKey]:
    return list(session.exec(select(SigningKey).order_by(col(SigningKey.first_used_at))).all())


@dataclass(frozen=True)
class Trust:
    """The keys this installation trusts, and the key it signs with (None: it has none)."""

    signer: Signer | None
    keys: dict[str, bytes] = field(default_factory=dict)  # key id -> raw public key

    def trusts(self, key: str | None, public: bytes | None = None) -> bool:
        """Whether key ``key`` (and, when given, exactly these public bytes) is trusted."""
        raw = self.keys.get(key or "")
        return raw is not None and (public is None or raw == public)


def installation_trust(
    *, key_path: Path | None, configured: Sequence[bytes], quiet: bool = False
) -> Trust:
    """``configured`` (``AUDIT_TRUSTED_KEYS``) and the public half of the key at
    ``key_path`` when there is one. ``quiet``: a key file that cannot be read is logged and
    left out (a web export is then unsigned) rather than refused."""
    try:
        signer = load_signer(key_path)
    except (InvalidRequest, OSError) as error:
        if not quiet:
            raise InvalidRequest(f"the signing key at {key_path} cannot be read: {error}") from None
        log.error("cannot read the signing key at %s (%s): exports unsigned", key_path, error)
        signer = None
    trusted = {key_id(raw): raw for raw in configured}
    if signer is not None:
        trusted[signer.key_id] = decode_key(signer.public_key)
    return Trust(signer=signer, keys=trusted)


def untrusted_keys(session: Session, trust: Trust) -> list[SigningKey]:
    """The keys in signing_keys that configuration does not trust: inserted behind the
    key holder's back, or an old key left out of AUDIT_TRUSTED_KEYS after a rotation."""
    return [
        row for row in public_keys(session) if not trust.trusts(row.key_id, _raw(row.public_key))
    ]


def _raw(text: str) -> bytes:
    try:
        return decode_key(text)
    except ValueError:
        return b""  # never equal to a trusted key
