"""A secret the server hands over once (an admin's temporary password for someone): kept in
the session, encrypted, from the POST that makes it to the page that shows it, and gone with
that page. Never in a URL, so never in an access log or the browser's history; the session
cookie (signed, not encrypted, by Flask) carries only AES-GCM ciphertext under a key derived
from SECRET_KEY."""

from __future__ import annotations

import base64
import binascii
import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app, session

SESSION_KEY = "_shown_once"
_PURPOSE = b"vein2vein: a secret shown once"


def _key() -> bytes:
    secret = current_app.config["SECRET_KEY"]
    material = secret.encode() if isinstance(secret, str) else bytes(secret)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_PURPOSE).derive(material)


def keep(**values: str) -> None:
    """Keep ``values`` for the next page that takes them (one at a time: a newer one wins)."""
    nonce = os.urandom(12)
    sealed = AESGCM(_key()).encrypt(nonce, json.dumps(values).encode(), _PURPOSE)
    session[SESSION_KEY] = base64.urlsafe_b64encode(nonce + sealed).decode("ascii")


def take() -> dict[str, str] | None:
    """What ``keep`` kept, once; None when nothing (or nothing readable) is waiting."""
    kept = session.pop(SESSION_KEY, None)
    if not isinstance(kept, str):
        return None
    try:
        raw = base64.urlsafe_b64decode(kept.encode("ascii"))
        values = json.loads(AESGCM(_key()).decrypt(raw[:12], raw[12:], _PURPOSE))
    except (ValueError, binascii.Error, InvalidTag, UnicodeError):
        return None
    if not isinstance(values, dict):
        return None
    return {str(k): str(v) for k, v in values.items()}
