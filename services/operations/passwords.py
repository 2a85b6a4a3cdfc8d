"""Passwords for the web pages and signatures: argon2id hashes, and a back-off per client.

Wrong passwords count per account and client (the address they come from; an IPv6 /64): at
the limit that client is blocked from that account for a while, twice as long each time,
and the block is kept in the admin log. The account itself is never locked, so an outsider
hammering someone's e-mail from elsewhere cannot keep its owner out; a new password lifts
every block, on record.

A wrong e-mail, a wrong password and a blocked client give the same answer, after the same
amount of work (a verify against a dummy hash), so the form tells nobody which e-mail
addresses exist or which are blocked.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import ipaddress
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlmodel import Session, select

from services.db.models import LoginFailure, Site, User
from services.domain.custody import Actor
from services.domain.errors import InvalidRequest, SignatureRefused
from services.operations.access import actor_for
from services.operations.admin import user_by_email
from services.operations.changelog import Changer, System, record_change

MIN_PASSWORD_LENGTH = 12  # NIST SP 800-63B allows 8; these accounts move patients' cells
MAX_PASSWORD_LENGTH = 256

_hasher = PasswordHasher()  # argon2id with the RFC 9106 low-memory parameters


@functools.cache
def _dummy_hash() -> str:
    """Made once, when first needed (not at import: every process would pay for it)."""
    return _hasher.hash("not a password anybody has")


SIGN_IN_GUARD = System("sign-in guard")


@dataclass(frozen=True)
class LoginPolicy:
    """How wrong passwords are answered, and for whom they count: ``client`` is the address
    the attempt comes from (the web layer fills it in for each request)."""

    max_failures: int = 5  # wrong passwords in a row from one client ...
    lockout: dt.timedelta = dt.timedelta(minutes=15)  # ... block it this long, doubling each time
    max_lockout: dt.timedelta = dt.timedelta(hours=24)
    client: str = "unknown"


def client_key(address: str | None) -> str:
    """What failures count against: an IPv4 address, or an IPv6 address's /64 (one host is
    given a whole /64, so counting single IPv6 addresses would count nothing)."""
    try:
        parsed = ipaddress.ip_address((address or "").strip())
    except ValueError:
        return (address or "unknown").strip()[:64] or "unknown"
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


def check_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidRequest(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidRequest(f"a password has at most {MAX_PASSWORD_LENGTH} characters")
    if len(set(password)) < 5:
        raise InvalidRequest("a password needs more than four different characters")


def set_password(session: Session, *, email: str, password: str, temporary: bool = False) -> User:
    """Set a user's password. A temporary one (an admin's reset, a new account) must be changed
    at the next sign-in. Either way every open session of the user ends. (Blocks of clients
    stay until ``lift_blocks``, which puts their end on record.)"""
    check_strength(password)
    user = user_by_email(session, email)
    user.password_hash = _hasher.hash(password)
    user.must_change_password = temporary
    session.add(user)
    session.flush()
    return user


def lift_blocks(session: Session, *, user: User, actor: Changer, now: dt.datetime) -> list[str]:
    """Forget every failure of the user's, from every client; the clients blocked until now
    are named in the admin log (the unlock). Returns them."""
    rows = session.exec(select(LoginFailure).where(LoginFailure.user_id == user.id)).all()
    blocked = sorted(
        row.client for row in rows if row.blocked_until is not None and row.blocked_until > now
    )
    for row in rows:
        session.delete(row)
    session.flush()
    if blocked:
        record_change(
            session,
            actor=actor,
            action="sign-in unblocked",
            subject=user.email,
            before={"blocked_clients": blocked},
            after={"blocked_clients": []},
            site_id=user.site_id,
            now=now,
        )
    return blocked


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
    """The user's own change: the current password first (a failure counts towards the
    client's back-off), then the new one, which may not be the old. Returns the new session
    key: the user's other sessions end with the old password. On record, with the blocks it
    lifts."""
    if check_password(session, email=actor.email, password=current, now=now, policy=policy) is None:
        raise SignatureRefused("the current password is wrong (repeated failures pause sign-in)")
    if current == new:
        raise InvalidRequest("the new password must differ from the current one")
    was_temporary = user_by_email(session, actor.email).must_change_password
    user = set_password(session, email=actor.email, password=new)
    record_change(
        session,
        actor=actor,
        action="password changed",
        subject=user.email,
        before={"must_change_password": was_temporary},
        after={"must_change_password": False, "other_sessions": "ended"},
        now=now,
    )
    lift_blocks(session, user=user, actor=actor, now=now)
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


SSO_KEY = ":sso"
"""The end of a session key whose user signed in at the identity provider (single sign-on):
such a session lasts while their site allows it, and has no temporary password to change."""


def actor_for_session(session: Session, key: str) -> SessionState | None:
    single_sign_on = key.endswith(SSO_KEY)
    key = key.removesuffix(SSO_KEY)
    user_id, _, _fingerprint = key.partition(":")
    if not (user_id.isascii() and user_id.isdigit()) or len(user_id) > 10:
        return None
    row = session.exec(
        select(User, Site).join(Site, Site.id == User.site_id).where(User.id == int(user_id))  # type: ignore[arg-type]
    ).first()
    if row is None:
        return None
    user, site = row
    if not user.active or session_key(user) != key:
        return None
    if single_sign_on:
        if user.oidc_subject is None:
            return None
        return SessionState(actor_for(user, site), must_change_password=False)
    if user.password_hash is None or not site.local_passwords:
        return None  # a password session ends when the site turns its passwords off
    return SessionState(actor_for(user, site), user.must_change_password)


def check_password(
    session: Session, *, email: str, password: str, now: dt.datetime, policy: LoginPolicy
) -> tuple[Actor, str] | None:
    """The actor and their session key when the e-mail and password match an active account
    and the client (``policy.client``) is not blocked from it; otherwise None, with the
    failure counted for that client. The caller commits either way."""
    row = session.exec(
        select(User, Site)
        .join(Site, Site.id == User.site_id)  # type: ignore[arg-type]
        .where(User.email == email.strip().lower())
        .with_for_update(of=User)
    ).first()
    if row is None or row[0].password_hash is None or not row[1].local_passwords:
        # no password, or a site whose people sign in and sign at its identity provider only
        _verify(_dummy_hash(), password)
        return None
    user, site = row
    client = client_key(policy.client)
    failure = session.exec(
        select(LoginFailure).where(LoginFailure.user_id == user.id, LoginFailure.client == client)
    ).first()
    if failure is not None and failure.blocked_until is not None and failure.blocked_until > now:
        _verify(_dummy_hash(), password)  # the same work, so a block is no timing oracle either
        return None
    assert user.password_hash is not None
    if not user.active or not _verify(user.password_hash, password):
        _count_failure(session, user=user, failure=failure, client=client, now=now, policy=policy)
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    if failure is not None:
        session.delete(failure)  # the owner of this client is back: its count starts again
    user.last_login_at = now
    session.add(user)
    session.flush()
    return actor_for(user, site), session_key(user)


def _count_failure(
    session: Session,
    *,
    user: User,
    failure: LoginFailure | None,
    client: str,
    now: dt.datetime,
    policy: LoginPolicy,
) -> None:
    assert user.id is not None
    if failure is None:
        failure = LoginFailure(user_id=user.id, client=client, last_failure_at=now)
    failure.failures += 1
    failure.last_failure_at = now
    if failure.failures >= policy.max_failures:
        failure.blocks += 1
        failure.failures = 0
        wait = min(policy.lockout * 2 ** min(failure.blocks - 1, 20), policy.max_lockout)
        failure.blocked_until = now + wait
        record_change(
            session,
            actor=SIGN_IN_GUARD,
            action="sign-in blocked",
            subject=user.email,
            after={
                "client": client,
                "failed_attempts": policy.max_failures,
                "blocked_until": failure.blocked_until.isoformat(),
                "block": failure.blocks,
            },
            site_id=user.site_id,
            now=now,
        )
    session.add(failure)
    session.flush()


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
