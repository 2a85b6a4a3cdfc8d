"""Couriers by contract: a site keeps the couriers it has contracted (its admin, or the
installation's operator at the command line), and a shipment that names no carrier is seen and
claimed only by those couriers (services.operations.access.shipment_condition). Every change is
in the admin log."""

from __future__ import annotations

import datetime as dt

from sqlmodel import Session, col, select

from services.db.models import CourierContract, Site
from services.domain.custody import Actor, SiteKind
from services.domain.errors import Forbidden, WrongSite
from services.operations.access import may_manage_site
from services.operations.admin import site_by_code
from services.operations.changelog import record_change


def contracted_couriers(session: Session, site_id: int) -> list[Site]:
    """The couriers a site has contracted now, by code."""
    return list(
        session.exec(
            select(Site)
            .join(CourierContract, col(CourierContract.courier_site_id) == col(Site.id))
            .where(CourierContract.site_id == site_id, col(CourierContract.ended_at).is_(None))
            .order_by(col(Site.code))
        ).all()
    )


def set_contract(
    session: Session,
    *,
    actor: Actor | None,
    site: Site,
    courier: str,
    active: bool,
    now: dt.datetime,
) -> CourierContract | None:
    """Contract a courier for ``site`` (``active``) or end the contract. ``actor``: the site's
    admin; None: the installation's operator, at the command line."""
    if actor is not None and not may_manage_site(actor, site):
        raise Forbidden("a site's courier contracts are kept by its administrators")
    carrier = site_by_code(session, courier)
    if carrier.kind is not SiteKind.COURIER:
        raise WrongSite(f"site {carrier.code} is a {carrier.kind.value} site, not a courier")
    if site.kind is SiteKind.COURIER:
        raise WrongSite(
            f"{site.code} is a courier; couriers are contracted by the sites they serve"
        )
    row = session.exec(
        select(CourierContract)
        .where(CourierContract.site_id == site.id, CourierContract.courier_site_id == carrier.id)
        .with_for_update()
    ).first()
    before = {"courier": carrier.code, "contracted": bool(row and row.ended_at is None)}
    if active:
        if row is None:
            assert site.id is not None
            assert carrier.id is not None
            row = CourierContract(
                site_id=site.id,
                courier_site_id=carrier.id,
                created_by_id=actor.user_id if actor else None,
                created_at=now,
            )
        row.ended_at = None
    elif row is not None and row.ended_at is None:
        row.ended_at = now
    if row is not None:
        session.add(row)
        session.flush()
    after = {"courier": carrier.code, "contracted": active}
    if before != after:
        record_change(
            session,
            actor=actor,
            action="courier contracted" if active else "courier contract ended",
            subject=site.code,
            before=before,
            after=after,
            now=now,
            site_id=site.id,
        )
    return row
