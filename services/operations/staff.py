"""An admin's work for their site: its people, their roles and passwords, their API tokens, the
site's FIN and signing rules, and the products' turnaround policies. Every change is kept in
the admin log (who, when, what, before and after), which admins read.

An admin manages the site they act for, and nobody else's. The installation's operator does
the same at the command line (``operator.py``, or ``actor=None`` here), kept in the same log
(``changelog.record_change``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlmodel import Session, col, select

from services.db.models import AdminChange, ApiToken, LoginFailure, Site, User
from services.domain.custody import Actor, Role
from services.domain.errors import Forbidden, InvalidRequest, NotFound
from services.domain.identifiers import validate_fin
from services.domain.sla import Policy
from services.operations import access, admin, passwords, signing
from services.operations.changelog import Changer, record_change


def changes(session: Session, actor: Actor, *, limit: int = 200) -> list[AdminChange]:
    """The log an admin reads: the changes of the sites they administer and those that bind
    every site."""
    _admin_only(actor)
    sites = access.managed_site_ids(session, actor)
    return list(
        session.exec(
            select(AdminChange)
            .where(col(AdminChange.site_id).in_(sites) | col(AdminChange.site_id).is_(None))
            .order_by(col(AdminChange.id).desc())
            .limit(limit)
        ).all()
    )


def _admin_only(actor: Actor) -> None:
    if actor.role is not Role.ADMIN:
        raise Forbidden("this is an administrator's page")


def user_record(user: User) -> dict[str, Any]:
    """A user as the admin log shows them (never their password or its hash)."""
    return {"email": user.email, "name": user.name, "role": user.role.value, "active": user.active}


def site_users(session: Session, actor: Actor) -> list[User]:
    """The users of the sites the admin administers."""
    _admin_only(actor)
    sites = access.managed_site_ids(session, actor)
    return list(
        session.exec(
            select(User)
            .where(col(User.site_id).in_(sites))
            .order_by(col(User.site_id) != actor.site_id, col(User.site_id), col(User.email))
        ).all()
    )


def blocked_clients(
    session: Session, actor: Actor, *, now: dt.datetime
) -> dict[int, list[LoginFailure]]:
    """The clients that must wait before they may try the password of a user of the site
    again, by user (a reset of the password lets them in)."""
    _admin_only(actor)
    rows = session.exec(
        select(LoginFailure)
        .join(User, col(User.id) == col(LoginFailure.user_id))
        .where(User.site_id == actor.site_id, col(LoginFailure.blocked_until) > now)
        .order_by(col(LoginFailure.client))
    ).all()
    found: dict[int, list[LoginFailure]] = {}
    for row in rows:
        found.setdefault(row.user_id, []).append(row)
    return found


def _site_user(session: Session, actor: Actor, user_id: int) -> User:
    _admin_only(actor)
    user = session.get(User, user_id)
    if user is None or user.site_id not in access.managed_site_ids(session, actor):
        raise NotFound(f"no user {user_id} at {actor.site.code}")
    return user


def add_staff(
    session: Session,
    *,
    actor: Actor,
    email: str,
    name: str,
    role: Role,
    now: dt.datetime,
    site_code: str | None = None,
) -> tuple[User, str]:
    """A new user of the admin's site (or of ``site_code``, a site the admin administers) with
    a temporary password, shown once, to be changed at the first sign-in."""
    _admin_only(actor)
    site = access.managed_site(session, actor, site_code or actor.site.code)
    user = admin.add_user(session, email=email, role=role, site_code=site.code, name=name)
    temporary = passwords.temporary_password()
    passwords.set_password(session, email=user.email, password=temporary, temporary=True)
    record_change(
        session,
        actor=actor,
        action="user added",
        subject=user.email,
        after={**user_record(user), "must_change_password": True, "site": site.code},
        now=now,
        site_id=site.id,
    )
    return user, temporary


def set_role(session: Session, *, actor: Actor, user_id: int, role: Role, now: dt.datetime) -> User:
    user = _site_user(session, actor, user_id)
    if user.id == actor.user_id:
        raise InvalidRequest("you cannot change your own role; another admin of the site can")
    site = session.get(Site, user.site_id)
    assert site is not None
    admin.check_role_at_site(role, site)
    before = user_record(user)
    user.role = role
    user.session_epoch += 1  # a new role: sign in again, to act in it
    session.add(user)
    record_change(
        session,
        actor=actor,
        action="role changed",
        subject=user.email,
        before=before,
        after=user_record(user),
        site_id=user.site_id,
        now=now,
    )
    return user


def set_active(
    session: Session, *, actor: Actor, user_id: int, active: bool, now: dt.datetime
) -> User:
    user = _site_user(session, actor, user_id)
    if user.id == actor.user_id:
        raise InvalidRequest("you cannot deactivate yourself; another admin of the site can")
    return apply_active(session, by=actor, user=user, active=active, now=now)


def apply_active(
    session: Session, *, by: Changer, user: User, active: bool, now: dt.datetime
) -> User:
    """(De)activate a user, on record: a deactivated user's sessions and tokens stop working."""
    before = user_record(user)
    user.active = active
    session.add(user)
    session.flush()
    record_change(
        session,
        actor=by,
        action="user activated" if active else "user deactivated",
        subject=user.email,
        before=before,
        after=user_record(user),
        site_id=user.site_id,
        now=now,
    )
    return user


def unbind_provider(session: Session, *, actor: Actor, user_id: int, now: dt.datetime) -> User:
    """Forget which person at the identity provider a user of the site is (the hospital gave
    the e-mail to someone else, or bound the wrong person): the next sign-in there binds again
    by verified e-mail. On record, with the subject forgotten."""
    user = _site_user(session, actor, user_id)
    if user.oidc_subject is None:
        raise InvalidRequest(f"{user.email} is bound to nobody at the identity provider")
    before = {"issuer": user.oidc_issuer, "subject": user.oidc_subject}
    user.oidc_issuer = user.oidc_subject = None
    session.add(user)
    session.flush()
    record_change(
        session,
        actor=actor,
        action="single sign-on unbound",
        subject=user.email,
        before=before,
        after={"issuer": None, "subject": None},
        now=now,
        site_id=user.site_id,
    )
    return user


def reset_password(
    session: Session, *, actor: Actor, user_id: int, now: dt.datetime
) -> tuple[User, str]:
    """A temporary password for a user of the site (shown once); their sessions end, every
    client blocked from the account is let in again (on record), and they choose their own
    at the next sign-in."""
    user = _site_user(session, actor, user_id)
    before = {"must_change_password": user.must_change_password}
    temporary = passwords.temporary_password()
    passwords.set_password(session, email=user.email, password=temporary, temporary=True)
    record_change(
        session,
        actor=actor,
        action="password reset",
        subject=user.email,
        before=before,
        after={"must_change_password": True, "sessions": "ended"},
        now=now,
    )
    passwords.lift_blocks(session, user=user, actor=actor, now=now)
    return user, temporary


def site_tokens(session: Session, actor: Actor) -> list[tuple[ApiToken, str]]:
    """The API tokens of the site's users, with whose they are."""
    _admin_only(actor)
    rows = session.exec(
        select(ApiToken, User.email)
        .join(User, col(User.id) == col(ApiToken.user_id))
        .where(User.site_id == actor.site_id)
        .order_by(col(ApiToken.id).desc())
    ).all()
    return [(token, email) for token, email in rows]


def revoke_site_token(
    session: Session, *, actor: Actor, token_id: int, now: dt.datetime
) -> ApiToken:
    _admin_only(actor)
    token = session.get(ApiToken, token_id)
    owner = session.get(User, token.user_id) if token else None
    if token is None or owner is None or owner.site_id != actor.site_id:
        raise NotFound(f"no token {token_id} at {actor.site.code}")
    if token.revoked_at is None:
        token.revoked_at = now
        session.add(token)
        record_change(
            session,
            actor=actor,
            action="token revoked",
            subject=f"{owner.email}: {token.name} ({token.prefix}...)",
            before={"revoked": False},
            after={"revoked": True},
            now=now,
        )
    return token


def set_fin(
    session: Session, *, actor: Actor, fin: str, now: dt.datetime, site_code: str | None = None
) -> Site:
    """Give the site (the admin's, or ``site_code``) its ISBT 128 FIN, once: identifiers are
    made from it and never change."""
    _admin_only(actor)
    site = access.managed_site(session, actor, site_code or actor.site.code)
    if site.fin is not None:
        raise InvalidRequest(f"{site.code} has its FIN {site.fin} already; a FIN never changes")
    validate_fin(fin)
    if session.exec(select(Site).where(Site.fin == fin)).first():
        raise InvalidRequest(f"FIN {fin} belongs to another site")
    site.fin = fin
    session.add(site)
    record_change(
        session,
        actor=actor,
        action="FIN set",
        subject=site.code,
        before={"fin": None},
        after={"fin": fin},
        now=now,
        site_id=site.id,
    )
    return site


def set_signing(
    session: Session,
    *,
    actor: Actor,
    step: str,
    required: bool,
    witness: bool,
    now: dt.datetime,
    site_code: str | None = None,
) -> dict[str, bool]:
    _admin_only(actor)
    site = access.managed_site(session, actor, site_code or actor.site.code)
    return apply_signing(
        session, by=actor, site=site, step=step, required=required, witness=witness, now=now
    )


def apply_signing(
    session: Session,
    *,
    by: Changer,
    site: Site,
    step: str,
    required: bool,
    witness: bool,
    now: dt.datetime,
) -> dict[str, bool]:
    """Which of ``site``'s steps are signed (and witnessed), on record."""
    if not step or len(step) > 32 or not step.replace("_", "").isalpha() or not step.isascii():
        raise InvalidRequest(f"{step!r} is not a step")
    before = signing.critical_steps(session, site)
    signing.set_critical_step(session, site=site, step=step, witness=witness, required=required)
    after = signing.critical_steps(session, site)
    record_change(
        session,
        actor=by,
        action="signing rules changed",
        subject=site.code,
        before=before,
        after=after,
        site_id=site.id,
        now=now,
    )
    return after


def policy_record(policy: Policy) -> dict[str, Any]:
    return {
        "version": policy.version,
        "limits_hours": {leg.value: seconds / 3600 for leg, seconds in policy.limits.items()},
        "typical_hours": {leg.value: seconds / 3600 for leg, seconds in policy.typical.items()},
        "at_risk": policy.at_risk,
        "escalate_after_hours": policy.escalate_after / 3600,
        "target_days": policy.target_days,
    }
