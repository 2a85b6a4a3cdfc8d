"""Single sign-on: who an identity provider's person is here, the sites that turn their own
passwords off, and the one-use tickets a signature's re-authentication leaves for its act.

- A person is matched by the (issuer, subject) bound to a vein2vein user, or, the first time,
  by the verified e-mail an admin provisioned (the binding is kept in the admin log). Nobody
  registers themselves: an e-mail no admin added is refused, and so is a second person at the
  provider with the e-mail of a user bound already. Roles and sites stay vein2vein's.
- A signature by a single sign-on user (and a witness's) goes back to the provider; the web
  layer checks its answer (domain.sso) and issues a ticket here, bound to the signer and to
  what they sign; the act consumes it, once, within OIDC_SIGNING_TICKET_MINUTES.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from collections.abc import Mapping

import sqlalchemy as sa
from sqlmodel import Session, select

from services.db.models import ApiToken, SigningTicket, Site, User
from services.domain.custody import Actor
from services.domain.errors import SignatureRefused, SsoRefused
from services.domain.sso import Identity, vouches_for
from services.operations.access import actor_for, managed_site
from services.operations.changelog import record_change
from services.operations.passwords import SSO_KEY, session_key


def person(
    session: Session, identity: Identity, now: dt.datetime, *, sites: str
) -> tuple[User, Site]:
    """The active vein2vein user an accepted ID token names, bound to it on first use, if the
    provider vouches for the people of the user's site (``sites``: OIDC_SITES)."""
    row = session.exec(
        select(User, Site)
        .join(Site, Site.id == User.site_id)  # type: ignore[arg-type]
        .where(User.oidc_issuer == identity.issuer, User.oidc_subject == identity.subject)
    ).first()
    if row is None:
        row = _bind(session, identity, now, sites=sites)
    user, site = row
    _vouched(user, site, sites)
    if not user.active:
        raise SsoRefused(f"{user.email} is deactivated in vein2vein; ask your site administrator")
    return user, site


def _vouched(user: User, site: Site, sites: str) -> None:
    if not vouches_for(sites, code=site.code, kind=site.kind):
        raise SsoRefused(
            f"{user.email} is a user of {site.code}, whose people this identity provider does "
            "not vouch for: sign in with your vein2vein password"
        )


def _bind(
    session: Session, identity: Identity, now: dt.datetime, *, sites: str
) -> tuple[User, Site]:
    if not identity.email or not identity.email_verified:
        raise SsoRefused(
            "the identity provider gave no verified e-mail, and no vein2vein user is bound to "
            "this person: ask your site administrator"
        )
    row = session.exec(
        select(User, Site)
        .join(Site, Site.id == User.site_id)  # type: ignore[arg-type]
        .where(User.email == identity.email)
        .with_for_update(of=User)
    ).first()
    if row is None:
        raise SsoRefused(
            f"{identity.email} has no vein2vein account: your site administrator adds people "
            "(nobody registers themselves)"
        )
    user, site = row
    _vouched(user, site, sites)  # before anything is bound
    if user.oidc_subject is not None:
        raise SsoRefused(
            f"the vein2vein user {user.email} is bound to another person at the identity "
            "provider; ask your site administrator"
        )
    user.oidc_issuer, user.oidc_subject = identity.issuer, identity.subject
    session.add(user)
    session.flush()
    record_change(
        session,
        actor=actor_for(user, site),
        action="single sign-on bound",
        subject=user.email,
        after={"issuer": identity.issuer, "subject": identity.subject},
        now=now,
        site_id=site.id,
    )
    return user, site


def sign_in(
    session: Session, identity: Identity, *, now: dt.datetime, sites: str
) -> tuple[Actor, str]:
    """The actor and the session key of a single sign-on (the key ends in ``:sso``)."""
    user, site = person(session, identity, now, sites=sites)
    user.last_login_at = now
    session.add(user)
    session.flush()
    return actor_for(user, site), session_key(user) + SSO_KEY


def set_local_passwords(
    session: Session, *, actor: Actor, site_code: str, on: bool, now: dt.datetime
) -> Site:
    """An admin of the site (or of the site managing it) turns its vein2vein passwords on or
    off; off, its people sign in and sign at the identity provider only, their password
    sessions end and their API tokens are revoked (each on record). On record."""
    site = managed_site(session, actor, site_code)
    if site.local_passwords == on:
        return site
    if not on:
        _revoke_site_tokens(session, actor=actor, site=site, now=now)
    before = site.local_passwords
    site.local_passwords = on
    session.add(site)
    session.flush()
    record_change(
        session,
        actor=actor,
        action="site passwords",
        subject=site.code,
        before={"local_passwords": before},
        after={"local_passwords": on},
        now=now,
        site_id=site.id,
    )
    return site


def _revoke_site_tokens(session: Session, *, actor: Actor, site: Site, now: dt.datetime) -> None:
    rows = session.exec(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)  # type: ignore[arg-type]
        .where(User.site_id == site.id, ApiToken.revoked_at.is_(None))  # type: ignore[union-attr]
    ).all()
    for token, user in rows:
        token.revoked_at = now
        session.add(token)
        record_change(
            session,
            actor=actor,
            action="token revoked",
            subject=f"{user.email}: {token.name} ({token.prefix}...)",
            before={"revoked": False},
            after={"revoked": True, "why": "site passwords off"},
            now=now,
            site_id=site.id,
        )
    session.flush()


def issue_ticket(
    session: Session,
    *,
    actor: Actor,
    identity: Identity,
    witness: bool,
    purpose: str,
    subject: Mapping[str, str],
    requested_at: dt.datetime,
    authenticated_at: dt.datetime,
    now: dt.datetime,
    lifetime: dt.timedelta,
    sites: str,
) -> str:
    """A ticket for the person the provider authenticated again: the signed-in ``actor``
    themselves, or (``witness``) a second, active user, for the act posted to ``purpose`` on
    ``subject`` (what the screen showed them: the bag, the patient, the event; a correction's
    event and reason). Returns the token (stored hashed)."""
    user, _site = person(session, identity, now, sites=sites)
    if witness and user.id == actor.user_id:
        raise SignatureRefused("a witness is a second person, not the one who performs the step")
    if not witness and user.id != actor.user_id:
        raise SignatureRefused(
            "the identity provider authenticated someone else: sign as yourself (a second "
            "person signs as the witness)"
        )
    token = secrets.token_urlsafe(32)
    assert user.id is not None
    session.add(
        SigningTicket(
            token_hash=_hash(token),
            user_id=user.id,
            purpose=bound_purpose(purpose, subject),
            witness=witness,
            requested_at=requested_at,
            authenticated_at=authenticated_at,
            expires_at=now + lifetime,
        )
    )
    session.flush()
    return token


def consume_ticket(
    session: Session,
    *,
    token: str,
    purpose: str,
    subject: Mapping[str, str],
    witness: bool,
    now: dt.datetime,
    user_id: int | None = None,
) -> tuple[User, Site]:
    """The signer a ticket stands for, the ticket used up (in the act's transaction: an act
    that fails leaves it unused). SignatureRefused when it is unknown, for another act, another
    record (``subject``: what the act records, as the screen showed it when the provider was
    asked), another role or another signer (``user_id``: the performer's), expired, or used
    already."""
    ticket = session.exec(
        select(SigningTicket).where(SigningTicket.token_hash == _hash(token))
    ).first()
    if (
        ticket is None
        or ticket.purpose != bound_purpose(purpose, subject)
        or ticket.witness != witness
        or (user_id is not None and ticket.user_id != user_id)
    ):
        raise SignatureRefused(
            "this re-authentication is not for this signature (another act, record or "
            "signer): sign again"
        )
    if ticket.expires_at <= now:
        raise SignatureRefused("the re-authentication has expired: sign again at the provider")
    used = session.execute(
        sa.update(SigningTicket)
        .where(SigningTicket.id == ticket.id, SigningTicket.consumed_at.is_(None))  # type: ignore[union-attr,arg-type]
        .values(consumed_at=now)
    )
    if used.rowcount != 1:  # type: ignore[attr-defined]
        raise SignatureRefused("this re-authentication signed already: sign again")
    row = session.exec(
        select(User, Site).join(Site, Site.id == User.site_id).where(User.id == ticket.user_id)  # type: ignore[arg-type]
    ).first()
    assert row is not None
    if not row[0].active:
        raise SignatureRefused(f"{row[0].email} is deactivated")
    return row


def bound_purpose(purpose: str, subject: Mapping[str, str]) -> str:
    """A ticket's purpose as stored: the act's page and the SHA-256 of what it signs (its
    fields, trimmed, in order of name), so that a ticket for bag A and patient A cannot sign
    bag B, nor one for a correction's reason another reason."""
    fields = {  # an empty field is no field (a page may post it or not)
        name: str(value).strip() for name, value in sorted(subject.items()) if str(value).strip()
    }
    digest = hashlib.sha256(json.dumps(fields, ensure_ascii=False).encode()).hexdigest()
    return f"{purpose}#{digest}"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
