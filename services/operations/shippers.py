"""Dry-vapour shippers as things: registered by their home site, packed only while in service
and qualified, in use while they travel, back in service when their shipment is received, or
quarantined when an alarm travelled in them. Every change by hand is kept in the admin log.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlmodel import Session, col, select

from services.db.models import Order, Shipment, ShipmentUnit, Shipper, Site, Unit
from services.domain.condition import (
    ShipperStatus,
    ShipperUnavailable,
    check_serial,
    check_usable,
    hold_time_warning,
)
from services.domain.custody import Actor, SiteKind, UnitKind
from services.domain.errors import Conflict, IllegalTransition, InvalidRequest, NotFound
from services.domain.identifiers import shipment_code
from services.domain.sla import DEFAULT_LIMITS, Leg
from services.operations import access, changelog
from services.operations.deadlines import current_policy

MAX_HOLD_HOURS = 24 * 60.0  # 60 days: longer than any LN2 dry shipper keeps -150 °C
TRANSIT_LEGS = {
    UnitKind.APHERESIS: Leg.PICKUP_TO_DELIVERY,
    UnitKind.PRODUCT: Leg.SHIP_TO_TREATMENT_RECEIPT,
}


def _shipper_record(shipper: Shipper) -> dict[str, Any]:
    return {
        "model": shipper.model,
        "hold_time_hours": shipper.hold_time_hours,
        "qualified_until": shipper.qualified_until.isoformat(),
        "status": shipper.status.value,
        "status_reason": shipper.status_reason,
    }


def _check_shipper_values(model: str, hold_time_hours: float, qualified_until: dt.datetime) -> str:
    model = " ".join(model.split())
    if not model or len(model) > 100:
        raise InvalidRequest("a shipper's model is 1 to 100 characters")
    if not 1.0 <= hold_time_hours <= MAX_HOLD_HOURS:
        raise InvalidRequest(f"a qualified hold time is between 1 and {MAX_HOLD_HOURS:g} hours")
    if qualified_until.tzinfo is None:
        raise InvalidRequest("qualified_until carries an offset from UTC")
    return model


def register_shipper(
    session: Session,
    *,
    actor: Actor | None,
    site: Site,
    serial: str,
    model: str,
    hold_time_hours: float,
    qualified_until: dt.datetime,
    now: dt.datetime,
) -> Shipper:
    """A new shipper of ``site`` (the actor's own, or any at the command line), in service."""
    assert site.id is not None
    if actor is not None:
        access.check_shipper_change(actor, site.id)
    serial = check_serial(serial)
    model = _check_shipper_values(model, hold_time_hours, qualified_until)
    if qualified_until <= now:
        raise InvalidRequest("its qualification has run out already: register it once requalified")
    if session.exec(select(Shipper.id).where(Shipper.serial == serial)).first() is not None:
        raise Conflict(f"shipper {serial} is registered already")
    shipper = Shipper(
        serial=serial,
        model=model,
        hold_time_hours=hold_time_hours,
        qualified_until=qualified_until.astimezone(dt.UTC),
        status=ShipperStatus.IN_SERVICE,
        site_id=site.id,
        created_by_id=actor.user_id if actor else None,
        created_at=now,
        updated_at=now,
    )
    session.add(shipper)
    session.flush()
    changelog.record_change(
        session,
        actor=actor,
        action="shipper.register",
        subject=serial,
        now=now,
        after=_shipper_record(shipper),
        site_id=site.id,
    )
    return shipper


def visible_shippers(session: Session, actor: Actor) -> list[Shipper]:
    return list(
        session.exec(
            select(Shipper).where(access.shipper_condition(actor)).order_by(col(Shipper.serial))
        ).all()
    )


def all_shippers(session: Session) -> list[Shipper]:
    """Every shipper (the command line's list)."""
    return list(session.exec(select(Shipper).order_by(col(Shipper.serial))).all())


def shipper_by_serial(session: Session, actor: Actor | None, serial: str) -> Shipper:
    shipper = session.exec(select(Shipper).where(Shipper.serial == serial.strip())).first()
    if shipper is None or (
        actor is not None and not access.can_view_shipper(session, actor, shipper)
    ):
        raise NotFound(f"no shipper {serial.strip()[:64]} you can see")
    return shipper


MANUAL_STATUSES = frozenset(
    {ShipperStatus.IN_SERVICE, ShipperStatus.QUARANTINED, ShipperStatus.RETIRED}
)


def change_shipper(
    session: Session,
    *,
    actor: Actor | None,
    serial: str,
    status: ShipperStatus | None,
    reason: str,
    qualified_until: dt.datetime | None = None,
    hold_time_hours: float | None = None,
    now: dt.datetime,
) -> Shipper:
    """Requalify a shipper, or put it in or out of service, with a reason; kept in the log."""
    shipper = shipper_by_serial(session, actor, serial)
    if actor is not None:
        access.check_shipper_change(actor, shipper.site_id)
    reason = " ".join(reason.split())
    if not reason:
        raise InvalidRequest("a change to a shipper needs a reason")
    if status is not None and status not in MANUAL_STATUSES:
        raise InvalidRequest("a shipper is put in use by packing it, not by hand")
    if shipper.status is ShipperStatus.RETIRED:
        raise IllegalTransition(f"shipper {shipper.serial} is retired; register another one")
    if shipper.status is ShipperStatus.IN_USE and status is not None:
        raise IllegalTransition(
            f"shipper {shipper.serial} travels with a shipment; it comes back into service when "
            "the shipment is received"
        )
    before = _shipper_record(shipper)
    _check_shipper_values(
        shipper.model,
        hold_time_hours if hold_time_hours is not None else shipper.hold_time_hours,
        qualified_until or shipper.qualified_until,
    )
    if qualified_until is not None:
        shipper.qualified_until = qualified_until.astimezone(dt.UTC)
    if hold_time_hours is not None:
        shipper.hold_time_hours = hold_time_hours
    if status is not None:
        shipper.status = status
    shipper.status_reason = reason[:500]
    shipper.updated_at = now
    session.add(shipper)
    session.flush()
    changelog.record_change(
        session,
        actor=actor,
        action="shipper.change",
        subject=shipper.serial,
        now=now,
        before=before,
        after=_shipper_record(shipper),
        site_id=shipper.site_id,
    )
    return shipper


def claim_shipper(
    session: Session, *, actor: Actor, serial: str, require_registered: bool, now: dt.datetime
) -> Shipper | None:
    """The shipper a new shipment is packed into, checked and locked: in service, qualified, of
    the actor's network. An unregistered serial passes only where the installation allows it."""
    shipper = session.exec(
        select(Shipper).where(Shipper.serial == serial.strip()).with_for_update()
    ).first()
    if shipper is None:
        if require_registered:
            raise ShipperUnavailable(
                f"shipper {serial.strip()[:64]} is not registered: register it (its model, hold "
                "time and qualification) before packing into it"
            )
        return None
    if not access.can_view_shipper(session, actor, shipper):
        raise ShipperUnavailable(f"shipper {shipper.serial} is not one of your network's")
    check_usable(shipper.serial, shipper.status, shipper.qualified_until, now=now)
    return shipper


def shipper_packed(
    session: Session, shipper: Shipper, shipment: Shipment, now: dt.datetime
) -> None:
    shipper.status = ShipperStatus.IN_USE
    shipper.status_reason = f"packed in {shipment_code(shipment.id or 0)}"
    shipper.updated_at = now
    session.add(shipper)


def shipment_warnings(session: Session, shipment: Shipment) -> list[str]:
    """What the people opening a shipment should act on: a leg allowed longer than its
    shipper's hold time, or a shipper nobody registered."""
    shipper = session.exec(select(Shipper).where(Shipper.serial == shipment.shipper_id)).first()
    if shipper is None:
        return [
            f"shipper {shipment.shipper_id} is not registered: its qualification and hold time "
            "are not checked"
        ]
    rows = set(
        session.exec(
            select(Unit.kind, Order.product)
            .join(ShipmentUnit, ShipmentUnit.unit_id == Unit.id)  # type: ignore[arg-type]
            .join(Order, Order.id == Unit.order_id)  # type: ignore[arg-type]
            .where(ShipmentUnit.shipment_id == shipment.id)
            .distinct()
        ).all()
    )
    if not rows:  # opened empty: the leg its origin ships, under the default limits
        origin = session.get(Site, shipment.origin_site_id)
        collection = origin is not None and origin.kind is SiteKind.COLLECTION
        rows = {(UnitKind.APHERESIS if collection else UnitKind.PRODUCT, "")}
    warnings = []
    for kind, product in sorted(rows):
        leg = TRANSIT_LEGS[UnitKind(kind)]
        limits = current_policy(session, product).limits if product else DEFAULT_LIMITS
        warning = hold_time_warning(
            shipper.serial, shipper.hold_time_hours, leg.value, limits[leg] / 3600
        )
        if warning and warning not in warnings:
            warnings.append(warning + (f" ({product})" if product else ""))
    return warnings


def shipment_arrived(session: Session, shipment: Shipment, now: dt.datetime) -> None:
    """The shipment is received: its shipper comes back into service, unless an alarm
    travelled in it (then it stays quarantined until its home site requalifies it)."""
    shipper = session.exec(
        select(Shipper).where(Shipper.serial == shipment.shipper_id).with_for_update()
    ).first()
    if shipper is None or shipper.status is not ShipperStatus.IN_USE:
        return
    shipper.status = ShipperStatus.IN_SERVICE
    shipper.status_reason = f"back from {shipment_code(shipment.id or 0)}"
    shipper.updated_at = now
    session.add(shipper)


def quarantine_after_alarm(
    session: Session, shipment: Shipment, kind: str, now: dt.datetime
) -> None:
    """An alarm travelled in the shipper: it is checked and requalified before its next use."""
    shipper = session.exec(
        select(Shipper).where(Shipper.serial == shipment.shipper_id).with_for_update()
    ).first()
    if shipper is None or shipper.status is ShipperStatus.RETIRED:
        return
    shipper.status = ShipperStatus.QUARANTINED
    shipper.status_reason = (
        f"{kind} alarm in {shipment_code(shipment.id or 0)}: inspect and requalify it"
    )
    shipper.updated_at = now
    session.add(shipper)
