"""A webhook's signing secret at rest: a Fernet token (AES-128-CBC and HMAC-SHA256, from the
``cryptography`` package) under WEBHOOK_SECRET_KEY, so a copy of the database (a backup, a
read replica, a reporting user) does not let anyone sign webhooks as us.

The secret itself ("whsec_" and 32 random bytes, Standard Webhooks' form) is shown once, when
the subscription is made, and read back only by the worker that signs a delivery. Several keys
may be given (comma-separated): the first seals, every one opens, so a key is rotated by
putting the new one first and re-sealing (``vein2vein webhooks seal-secrets``). A subscription
from before secrets were sealed holds its secret in clear; it still signs, and is sealed by
the same command.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

CLEAR_PREFIX = "whsec_"  # a secret in clear (Standard Webhooks' form): one kept before sealing


class SecretUnreadable(ValueError):
    """The stored secret opens under none of the keys (a key was dropped or changed)."""


def new_secret() -> str:
    return CLEAR_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def check_key(key: str) -> str:
    """A Fernet key as WEBHOOK_SECRET_KEY gives it (URL-safe base64 of 32 bytes)."""
    try:
        Fernet(key.encode())
    except (ValueError, TypeError):
        raise ValueError(
            "WEBHOOK_SECRET_KEY holds a key that is not a Fernet key (URL-safe base64 of 32 "
            'bytes): make one with python -c "from cryptography.fernet import Fernet; '
            'print(Fernet.generate_key().decode())"'
        ) from None
    return key


def derived_key(secret_key: str) -> str:
    """A Fernet key derived from SECRET_KEY (HKDF-SHA256), for development and tests only:
    production is given a key of its own."""
    raw = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"vein2vein webhook secrets"
    ).derive(secret_key.encode())
    return base64.urlsafe_b64encode(raw).decode()


def _fernet(keys: Sequence[str]) -> MultiFernet:
    if not keys:
        raise ValueError("no webhook secret key is configured (WEBHOOK_SECRET_KEY)")
    return MultiFernet([Fernet(key.encode()) for key in keys])


def seal(secret: str, keys: Sequence[str]) -> str:
    """The secret as it is stored: a Fernet token under the first key."""
    return _fernet(keys).encrypt(secret.encode()).decode()


def is_sealed(stored: str) -> bool:
    return not stored.startswith(CLEAR_PREFIX)


def reveal(stored: str, keys: Sequence[str]) -> str:
    """The secret a delivery signs with: opened under any of the keys, or as kept in clear."""
    if not is_sealed(stored):
        return stored
    try:
        return _fernet(keys).decrypt(stored.encode()).decode()
    except (InvalidToken, ValueError):
        raise SecretUnreadable(
            "the subscription's signing secret opens under none of WEBHOOK_SECRET_KEY's keys "
            "(was the key that sealed it removed?)"
        ) from None


def reseal(stored: str, keys: Sequence[str]) -> str | None:
    """The stored secret sealed under the first key, or None when it already is (a secret no
    key opens raises SecretUnreadable)."""
    if is_sealed(stored):
        try:
            Fernet(keys[0].encode()).decrypt(stored.encode())
            return None
        except InvalidToken:
            pass
    return seal(reveal(stored, keys), keys)
