"""Sites as their admins keep them: added and changed from /admin (or the command line), each
change in the admin log; and each site's wall clock (its IANA time zone), which the pages
read times in.

An admin adds sites for their own network: a site they add is administered by their site's
admins (``managed_by_site_id``) as well as its own (services.operations.access.managed_site).
A site's code and kind never change; its FIN is given once.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlmodel import Session, select

from services.db.models import Site
from services.domain.custody import Actor, SiteKind
from services.domain.errors import InvalidRequest
from services.domain.family_status import check_phone
from services.domain.local_time import UTC_ZONE, check_zone
from services.operations import access, admin
from services.operations.changelog import record_change


def _record(site: Site) -> dict[str, Any]:
    return {
        "code": site.code,
        "kind": site.kind.value,
        "name": site.name,
        "fin": site.fin,
        "time_zone": site.time_zone,
        "phone": site.phone,
        "jurisdiction": site.jurisdiction,
    }


def managed_sites(session: Session, actor: Actor) -> list[Site]:
    """The sites the admin administers: their own first, then those their site added."""
    ids = access.managed_site_ids(session, actor)
    rows = session.exec(select(Site).where(Site.id.in_(ids))).all()  # type: ignore[union-attr]
    return sorted(rows, key=lambda site: (site.id != actor.site_id, site.code))


def add_site(
    session: Session,
    *,
    actor: Actor | None,
    code: str,
    kind: SiteKind,
    name: str,
    fin: str | None,
    time_zone: str,
    now: dt.datetime,
) -> Site:
    """A new site; added by an admin, it is administered by the admin's site too. ``actor``
    None: the installation's operator, at the command line."""
    if actor is not None:
        access.managed_site(session, actor, actor.site.code)  # an admin, of their own site
    site = admin.add_site(
        session,
        code=code,
        kind=kind,
        name=name,
        fin=fin or None,
        time_zone=time_zone,
        managed_by_site_id=actor.site_id if actor else None,
    )
    record_change(
        session,
        actor=actor,
        action="site added",
        subject=site.code,
        after=_record(site),
        now=now,
        site_id=site.id,
    )
    return site


def change_site(
    session: Session,
    *,
    actor: Actor | None,
    code: str,
    name: str | None = None,
    time_zone: str | None = None,
    phone: str | None = None,
    jurisdiction: str | None = None,
    now: dt.datetime,
) -> Site:
    """A site's name, time zone, phone (families call it; "" clears it) or jurisdiction changed
    (its code and kind never change; its FIN is given once, services.operations.staff.set_fin).
    The jurisdiction (a code such as US) picks the post-infusion monitoring periods of a
    product's profile."""
    site = (
        admin.site_by_code(session, code)
        if actor is None
        else access.managed_site(session, actor, code)
    )
    before = _record(site)
    if name is not None:
        name = name.strip()
        if not name or len(name) > 200:
            raise InvalidRequest("a site's name is 1 to 200 characters")
        site.name = name
    if time_zone is not None:
        site.time_zone = check_zone(time_zone)
    if phone is not None:
        site.phone = check_phone(phone)
    if jurisdiction is not None:
        place = jurisdiction.strip().upper()
        if not (1 <= len(place) <= 8 and place.replace("-", "").isalnum()):
            raise InvalidRequest(f"{jurisdiction!r} is not a jurisdiction code (e.g. US, GB, EU)")
        site.jurisdiction = place
    after = _record(site)
    if after != before:
        session.add(site)
        record_change(
            session,
            actor=actor,
            action="site changed",
            subject=site.code,
            before={k: v for k, v in before.items() if before[k] != after[k]},
            after={k: v for k, v in after.items() if before[k] != after[k]},
            now=now,
            site_id=site.id,
        )
    return site


# each site's wall clock


def zones(session: Session) -> dict[int, str]:
    """Every site's time zone, by id (one query: sites are few)."""
    return {
        int(site_id): zone or UTC_ZONE
        for site_id, zone in session.exec(select(Site.id, Site.time_zone)).all()
        if site_id is not None
    }


def zones_by_code(session: Session) -> dict[str, str]:
    return {
        code: zone or UTC_ZONE for code, zone in session.exec(select(Site.code, Site.time_zone))
    }
