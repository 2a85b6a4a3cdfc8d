"""Passwords for the web pages: argon2id hashes, a lock after repeated failures.

A wrong e-mail and a wrong password give the same answer, after the same amount of work (a
verify against a dummy hash), so the login form tells nobody which e-mail addresses exist.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlmodel import Session, select

from services.db.models import Site, User
from services.domain.custody import Actor
from services.domain.errors import InvalidRequest, SignatureRefused
from services.operations.access import actor_for
from services.operations.admin import user_by_email

MIN_PASSWORD_LENGTH = 12  # NIST SP 800-63B allows 8; these accounts move patients' cells
MAX_PASSWORD_LENGTH = 256

_hasher = PasswordHasher()  # argon2id with the RFC 9106 low-memory parameters


@functools.cache
def _dummy_hash() -> str:
    """Made once, when first needed (not at import: every process would pay for it)."""
    return _hasher.hash("not a password anybody has")


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


def set_password(session: Session, *, email: str, password: str, temporary: bool = False) -> User:
    """Set a user's password. A temporary one (an admin's reset, a new account) must be changed
    at the next sign-in. Either way every open session of the user ends."""
    check_strength(password)
    user = user_by_email(session, email)
    user.password_hash = _hasher.hash(password)
    user.failed_logins = 0
    user.locked_until = None
    user.must_change_password = temporary
    session.add(user)
    session.flush()
    return user


def temporary_password() -> str:
    """A temporary password to hand over once: 16 random characters from an unambiguous set."""
    alphabet = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "".join(secrets.choice(alphabet) for _ in range(16))


def change_password(
    session: Session,
    *,
    actor: Actor,
    current: str,
    new: str,
    now: dt.datetime,
    policy: LoginPolicy,
) -> str:
    """The user's own change: the current password first (a failure counts towards the lock),
    then the new one, which may not be the old. Returns the new session key: the user's other
    sessions end with the old password."""
    if check_password(session, email=actor.email, password=current, now=now, policy=policy) is None:
        raise SignatureRefused("the current password is wrong (repeated failures lock the account)")
    if current == new:
        raise InvalidRequest("the new password must differ from the current one")
    user = set_password(session, email=actor.email, password=new)
    return session_key(user)


def sign_out_everywhere(session: Session, *, actor: Actor) -> str:
    """End every session of the user, this one included (the caller signs it in again)."""
    user = user_by_email(session, actor.email)
    user.session_epoch += 1
    session.add(user)
    session.flush()
    return session_key(user)


def session_key(user: User) -> str:
    """What a login session carries instead of the bare user id: it changes with the password
    and with the user's session epoch, so a new password or "sign out everywhere" ends every
    session opened before."""
    material = f"{user.password_hash or ''}:{user.session_epoch}"
    fingerprint = hashlib.sha256(material.encode()).hexdigest()[:16]
    return f"{user.id}:{fingerprint}"


@dataclass(frozen=True)
class SessionState:
    actor: Actor
    must_change_password: bool


def actor_for_session(session: Session, key: str) -> SessionState | None:
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
    return SessionState(actor_for(user, site), user.must_change_password)


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
        _verify(_dummy_hash(), password)
        return None
    user, site = row
    if user.locked_until is not None and user.locked_until > now:
        _verify(_dummy_hash(), password)  # the same work, so the lock is no timing oracle either
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
