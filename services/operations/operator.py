"""The installation's operator at the command line: sites, users, passwords, signing rules and
the signing key, for any site, each change in the admin log under the operating-system user's
name, "(command line)" (``changelog.record_change`` with ``actor=None``).

An admin does the same for their own site on the pages (``staff.py``); tokens, policies, alarm
rules and shippers have one operation for both (``admin.issue_token``, ``admin.revoke_tokens``,
``staff.change_policy``, ``condition.set_rule``, ``shippers``).
"""

from __future__ import annotations

import datetime as dt

from sqlmodel import Session

from services.db.models import Site, User
from services.domain.custody import Role, SiteKind
from services.operations import admin, passwords, staff
from services.operations.changelog import record_change


def add_site(
    session: Session, *, code: str, kind: SiteKind, name: str, fin: str | None, now: dt.datetime
) -> Site:
    site = admin.add_site(session, code=code, kind=kind, name=name, fin=fin)
    record_change(
        session,
        actor=None,
        action="site added",
        subject=site.code,
        after={"code": site.code, "kind": site.kind.value, "name": site.name, "fin": site.fin},
        site_id=site.id,
        now=now,
    )
    return site


def add_user(
    session: Session,
    *,
    email: str,
    role: Role,
    site_code: str,
    name: str | None,
    password: str | None,
    now: dt.datetime,
) -> User:
    """A new user; with ``password`` they may sign in on the pages, without it they have API
    tokens only."""
    user = admin.add_user(session, email=email, role=role, site_code=site_code, name=name)
    if password is not None:
        passwords.set_password(session, email=user.email, password=password)
    record_change(
        session,
        actor=None,
        action="user added",
        subject=user.email,
        after={**staff.user_record(user), "web_sign_in": password is not None},
        site_id=user.site_id,
        now=now,
    )
    return user


def set_password(session: Session, *, email: str, password: str, now: dt.datetime) -> User:
    """A new password (the user's sessions end); every client blocked from the account is let
    in again, on record."""
    user = admin.user_by_email(session, email)
    before = {"web_sign_in": user.password_hash is not None}
    passwords.set_password(session, email=user.email, password=password)
    record_change(
        session,
        actor=None,
        action="password set",
        subject=user.email,
        before=before,
        after={"web_sign_in": True, "sessions": "ended"},
        site_id=user.site_id,
        now=now,
    )
    passwords.lift_blocks(session, user=user, actor=None, now=now)
    return user


def set_active(session: Session, *, email: str, active: bool, now: dt.datetime) -> User:
    """(De)activate a user: a deactivated one can neither sign in nor use a token."""
    user = admin.user_by_email(session, email)
    return staff.apply_active(session, by=None, user=user, active=active, now=now)


def set_signing(
    session: Session, *, site_code: str, step: str, required: bool, witness: bool, now: dt.datetime
) -> dict[str, bool]:
    site = admin.site_by_code(session, site_code)
    return staff.apply_signing(
        session, by=None, site=site, step=step, required=required, witness=witness, now=now
    )


def key_made(
    session: Session, *, key_id: str, public_key: str, previous: str | None, now: dt.datetime
) -> None:
    """The checkpoint-signing key made or replaced (its public half; the private one never
    leaves its file)."""
    record_change(
        session,
        actor=None,
        action="signing key rotated" if previous else "signing key made",
        subject=key_id,
        before={"key_id": previous} if previous else None,
        after={"key_id": key_id, "public_key": public_key},
        every_site=True,
        now=now,
    )
