"""Passwords for the web pages: argon2id hashes, a lock after repeated failures.

A wrong e-mail and a wrong password give the same answer, after the same amount of work (a
verify against a dummy hash), so the login form tells nobody which e-mail addresses exist.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlmodel import Session, select

from services.db.models import Site, User
from services.domain.custody import Actor
from services.domain.errors import InvalidRequest
from services.operations.access import actor_for
from services.operations.admin import user_by_email

MIN_PASSWORD_LENGTH = 12  # NIST SP 800-63B allows 8; these accounts move patients' cells
MAX_PASSWORD_LENGTH = 256

_hasher = PasswordHasher()  # argon2id with the RFC 9106 low-memory parameters
_DUMMY_HASH = _hasher.hash("not a password anybody has")


@dataclass(frozen=True)
class LoginPolicy:
    max_failures: int = 5
    lockout: dt.timedelta = dt.timedelta(minutes=15)


def check_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidRequest(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidRequest(f"a password has at most {MAX_PASSWORD_LENGTH} characters")
    if len(set(password)) < 5:
        raise InvalidRequest("a password needs more than four different characters")


def set_password(session: Session, *, email: str, password: str) -> User:
    check_strength(password)
    user = user_by_email(session, email)
    user.password_hash = _hasher.hash(password)
    user.failed_logins = 0
    user.locked_until = None
    session.add(user)
    session.flush()
    return user


def session_key(user: User) -> str:
    """What a login session carries instead of the bare user id: it changes with the password,
    so setting a new password ends every session opened with the old one."""
    fingerprint = hashlib.sha256((user.password_hash or "").encode()).hexdigest()[:16]
    return f"{user.id}:{fingerprint}"


def actor_for_session(session: Session, key: str) -> Actor | None:
    user_id, _, _fingerprint = key.partition(":")
    if not (user_id.isascii() and user_id.isdigit()) or len(user_id) > 10:
        return None
    row = session.exec(
        select(User, Site).join(Site, Site.id == User.site_id).where(User.id == int(user_id))  # type: ignore[arg-type]
    ).first()
    if row is None:
        return None
    user, site = row
    if not user.active or user.password_hash is None or session_key(user) != key:
        return None
    return actor_for(user, site)


def check_password(
    session: Session, *, email: str, password: str, now: dt.datetime, policy: LoginPolicy
) -> tuple[Actor, str] | None:
    """The actor and their session key when the e-mail and password match an active, unlocked
    account; otherwise None, with the failure counted. The caller commits either way."""
    row = session.exec(
        select(User, Site)
        .join(Site, Site.id == User.site_id)  # type: ignore[arg-type]
        .where(User.email == email.strip().lower())
        .with_for_update(of=User)
    ).first()
    if row is None or row[0].password_hash is None:
        _verify(_DUMMY_HASH, password)
        return None
    user, site = row
    if user.locked_until is not None and user.locked_until > now:
        _verify(_DUMMY_HASH, password)  # the same work, so the lock is no timing oracle either
        return None
    assert user.password_hash is not None
    if not user.active or not _verify(user.password_hash, password):
        user.failed_logins += 1
        if user.failed_logins >= policy.max_failures:
            user.locked_until = now + policy.lockout
            user.failed_logins = 0
        session.add(user)
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now
    session.add(user)
    session.flush()
    return actor_for(user, site), session_key(user)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
