"""Sites, users and API tokens."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets

import sqlalchemy as sa
from sqlmodel import Session, col, select

from services.db.models import ApiToken, Site, User
from services.domain.custody import Actor, Role, SiteKind, SiteRef
from services.domain.errors import Conflict, Forbidden, InvalidRequest, NotFound
from services.domain.identifiers import validate_fin
from services.domain.local_time import UTC_ZONE, check_zone
from services.domain.targets import check_email_address
from services.operations.access import actor_for as actor_for  # re-exported: how callers build one
from services.operations.changelog import Changer, record_change

SITE_CODE = re.compile(r"[A-Z0-9][A-Z0-9_-]{0,31}")  # ASCII upper case, as scanners type it
TOKEN_PREFIX = "v2v_"  # noqa: S105 - a marker that makes leaked tokens easy to find
# Sites that assign ISBT 128 identifiers (DINs, COIs) need their facility identification number.
SITES_NEEDING_FIN = frozenset({SiteKind.COLLECTION, SiteKind.MANUFACTURING})
# where each role works: the kind of site whose users scan what the role scans (the custody
# table's performers); a courier's users belong to a courier, an admin to any site
ROLE_SITE_KINDS: dict[Role, frozenset[SiteKind]] = {
    Role.ADMIN: frozenset(SiteKind),
    Role.APHERESIS_STAFF: frozenset({SiteKind.COLLECTION}),
    Role.COURIER: frozenset({SiteKind.COURIER}),
    Role.MANUFACTURING_OPERATOR: frozenset({SiteKind.MANUFACTURING}),
    Role.CARE_TEAM: frozenset({SiteKind.TREATMENT}),
    Role.QA: frozenset({SiteKind.COLLECTION, SiteKind.MANUFACTURING, SiteKind.TREATMENT}),
}


def check_role_at_site(role: Role, site: Site) -> None:
    """A role only at a site of a kind that fits it (no courier at a treatment site): the one
    rule for the pages, the API and the command line."""
    fits = ROLE_SITE_KINDS[role]
    if site.kind not in fits:
        kinds = " or ".join(sorted(kind.value for kind in fits))
        raise InvalidRequest(
            f"{site.code} is a {site.kind.value} site: a {role.value.replace('_', ' ')} works "
            f"at a {kinds} site"
        )


def add_site(
    session: Session,
    *,
    code: str,
    kind: SiteKind,
    name: str,
    fin: str | None = None,
    time_zone: str = UTC_ZONE,
    managed_by_site_id: int | None = None,
) -> Site:
    code = code.strip()
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidRequest("a site's name is 1 to 200 characters")
    time_zone = check_zone(time_zone)
    if not SITE_CODE.fullmatch(code):
        raise InvalidRequest(f"site code {code!r} must be upper-case letters, digits, '-' or '_'")
    if fin is not None:
        validate_fin(fin)
    elif kind in SITES_NEEDING_FIN:
        raise InvalidRequest(
            f"a {kind.value} site assigns ISBT 128 identifiers (DINs, chains of identity) "
            "and needs its FIN"
        )
    if session.exec(select(Site).where(Site.code == code)).first():
        raise Conflict(f"a site with code {code} already exists")
    if fin is not None and session.exec(select(Site).where(Site.fin == fin)).first():
        raise Conflict(f"FIN {fin} already belongs to another site")
    site = Site(
        code=code,
        kind=kind,
        name=name,
        fin=fin,
        time_zone=time_zone,
        managed_by_site_id=managed_by_site_id,
    )
    session.add(site)
    session.flush()
    return site


def site_by_code(session: Session, code: str) -> Site:
    site = session.exec(select(Site).where(Site.code == code)).first()
    if site is None:
        raise NotFound(f"no site has code {code!r}")
    return site


def add_user(
    session: Session, *, email: str, role: Role, site_code: str, name: str | None = None
) -> User:
    email = check_email_address(email).lower()
    site = site_by_code(session, site_code)
    check_role_at_site(role, site)
    if session.exec(select(User).where(User.email == email)).first():
        raise Conflict(f"a user with e-mail {email} already exists")
    assert site.id is not None
    user = User(email=email, name=name or email.split("@")[0], role=role, site_id=site.id)
    session.add(user)
    session.flush()
    return user


def user_by_email(session: Session, email: str) -> User:
    user = session.exec(select(User).where(User.email == email.strip().lower())).first()
    if user is None:
        raise NotFound(f"no user has e-mail {email!r}")
    return user


def actor_by_email(session: Session, email: str) -> Actor:
    """The user with ``email``, acting for their own site (the demo, benchmarks, tests)."""
    user = user_by_email(session, email)
    site = session.get(Site, user.site_id)
    assert site is not None
    return actor_for(user, site)


def hash_token(token: str) -> str:
    # API tokens are 256-bit random values: a fast hash is enough, no password stretching needed.
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    session: Session,
    *,
    email: str,
    name: str = "default",
    expires_at: dt.datetime | None = None,
) -> tuple[ApiToken, str]:
    """A new token for the user; returns the row and the token, which is never stored."""
    user = user_by_email(session, email)
    assert user.id is not None
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        user_id=user.id,
        name=name,
        token_hash=hash_token(token),
        prefix=token[:12],
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return row, token


def issue_token(
    session: Session,
    *,
    by: Changer,
    email: str,
    name: str = "default",
    expires_at: dt.datetime | None = None,
    now: dt.datetime,
) -> tuple[ApiToken, str]:
    """``create_token``, on record (its name, prefix and expiry; never the token). A person
    makes their own only where their site's passwords are on: a site that signs in at its
    identity provider only gets tokens from the installation's operator (the CLI), else a
    session at the provider would mint a credential that outlives it."""
    user = user_by_email(session, email)
    if isinstance(by, Actor):
        site = session.get(Site, user.site_id)
        assert site is not None
        if not site.local_passwords:
            raise Forbidden(
                f"{site.code} signs in at its identity provider only: its people make no API "
                "tokens of their own (the installation's operator issues an integration's)"
            )
    row, token = create_token(session, email=email, name=name, expires_at=expires_at)
    record_change(
        session,
        actor=by,
        action="token created",
        subject=f"{user.email}: {row.name} ({row.prefix}...)",
        after={
            "name": row.name,
            "prefix": row.prefix,
            "expires_at": expires_at.isoformat() if expires_at else None,
        },
        site_id=user.site_id,
        now=now,
    )
    return row, token


def revoke_tokens(
    session: Session, *, email: str, name: str, now: dt.datetime, by: Changer = None
) -> int:
    """Revoke the user's tokens called ``name``; each one revoked is on record."""
    user = user_by_email(session, email)
    rows = session.exec(
        select(ApiToken).where(
            ApiToken.user_id == user.id,
            ApiToken.name == name,
            col(ApiToken.revoked_at).is_(None),
        )
    ).all()
    for row in rows:
        row.revoked_at = now
        session.add(row)
        record_change(
            session,
            actor=by,
            action="token revoked",
            subject=f"{user.email}: {row.name} ({row.prefix}...)",
            before={"revoked": False},
            after={"revoked": True},
            site_id=user.site_id,
            now=now,
        )
    session.flush()
    return len(rows)


def tokens_of(session: Session, *, email: str) -> list[ApiToken]:
    user = user_by_email(session, email)
    return list(
        session.exec(
            select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id)  # type: ignore[arg-type]
        ).all()
    )


def revoke_token(session: Session, *, actor: Actor, token_id: int, now: dt.datetime) -> ApiToken:
    """Revoke one of the actor's own tokens; it stops working with the next request."""
    row = session.get(ApiToken, token_id)
    if row is None or row.user_id != actor.user_id:
        raise NotFound(f"no token {token_id} of yours")
    if row.revoked_at is None:
        row.revoked_at = now
        session.add(row)
        record_change(
            session,
            actor=actor,
            action="token revoked",
            subject=f"{actor.email}: {row.name} ({row.prefix}...)",
            before={"revoked": False},
            after={"revoked": True},
            now=now,
        )
    return row


# one statement, built once: a bearer token is looked up on every API request
_TOKENS, _USERS, _SITES = ApiToken.__table__, User.__table__, Site.__table__  # type: ignore[attr-defined]
_TOKEN_ACTOR = (
    sa.select(
        _TOKENS.c.revoked_at,
        _TOKENS.c.expires_at,
        _USERS.c.id,
        _USERS.c.email,
        _USERS.c.role,
        _USERS.c.active,
        _SITES.c.id,
        _SITES.c.code,
        _SITES.c.kind,
    )
    .join(_USERS, _USERS.c.id == _TOKENS.c.user_id)
    .join(_SITES, _SITES.c.id == _USERS.c.site_id)
    .where(_TOKENS.c.token_hash == sa.bindparam("token_hash"))
)


def actor_for_token(db: Session | sa.Connection, token: str, *, now: dt.datetime) -> Actor | None:
    """The acting user for a bearer token, or None when it is unknown, expired or revoked."""
    row = db.execute(_TOKEN_ACTOR, {"token_hash": hash_token(token)}).first()
    if row is None:
        return None
    revoked_at, expires_at, user_id, email, role, active, site_id, code, kind = row
    if revoked_at is not None or not active:
        return None
    if expires_at is not None and expires_at <= now:
        return None
    return Actor(
        user_id=user_id, email=email, role=role, site=SiteRef(code=code, kind=kind), site_id=site_id
    )
