"""The installation's checkpoint-signing key: an Ed25519 private key in a PEM file that only
the processes taking checkpoints read (the beat's worker and the command line). Its public half
is recorded in signing_keys the first time it signs, and published in the API."""

from __future__ import annotations

import base64
import datetime as dt
import os
from dataclasses import dataclass
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
from services.domain.evidence import ALGORITHM, key_id, public_bytes


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
