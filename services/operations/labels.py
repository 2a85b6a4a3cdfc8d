"""Label specs for bags and shippers (the identifiers verified by the domain, handed to the
labels package), and every print of a label, on record."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlmodel import Session, col, func, select

from labels import LabelSpec, ShipmentLabelSpec
from services.db.models import LabelPrint, Order, Shipment, ShipmentUnit, Site, Unit, User
from services.domain.custody import Actor, Role, UnitKind
from services.domain.errors import Forbidden, InvalidRequest
from services.domain.identifiers import Coi, Din, label_payload, shipment_code


def spec_for(
    din: Din,
    coi: Coi,
    *,
    product: str,
    collected_at: dt.datetime,
    site: str,
    time_caption: str = "Collected",
) -> LabelSpec:
    """A bag label from verified identifiers: their barcode, eye-readable and 2-D code forms."""
    return LabelSpec(
        din_barcode=din.barcode,
        din_eye_readable=din.eye_readable,
        din_check_character=din.check_character,
        coi=coi.value,
        coi_check_character=coi.check_character,
        qr_payload=label_payload(din, coi),
        product=product,
        collected_at=collected_at,
        site=site,
        time_caption=time_caption,
    )


def label_spec(session: Session, unit: Unit, order: Order) -> LabelSpec:
    """An apheresis bag's label names its collection; a product bag's, its filling."""
    product = unit.kind is UnitKind.PRODUCT
    site = session.get(Site, order.manufacturing_site_id if product else order.collection_site_id)
    assert site is not None
    return spec_for(
        Din.from_value(unit.din),
        Coi.from_value(order.coi),
        product=f"{order.product} CAR-T product" if product else order.product,
        collected_at=unit.collected_at,
        site=site.name,
        time_caption="Filled" if product else "Collected",
    )


# printing, on record


PRINTING_ROLES = frozenset({Role.APHERESIS_STAFF, Role.MANUFACTURING_OPERATOR, Role.QA})
TARGETS = ("pdf", "printer")
DOWNLOAD = "download"  # a label file taken from the API (or a page's link): it can be printed
RECENT_PRINT = dt.timedelta(minutes=15)  # the page's own print shows its label this long


def _may_print(actor: Actor, site_id: int) -> None:
    if actor.role not in PRINTING_ROLES or actor.site_id != site_id:
        raise Forbidden("labels are printed by the staff of the site that labels the bag")


def record_print(
    session: Session,
    *,
    actor: Actor,
    unit: Unit,
    order: Order,
    target: str,
    reason: str | None,
    now: dt.datetime,
) -> LabelPrint:
    """A bag's label printed: the first print by the site that labels the bag, each reprint
    with its reason (who, when, why), all on the order's record."""
    labelling = (
        order.manufacturing_site_id if unit.kind is UnitKind.PRODUCT else (order.collection_site_id)
    )
    _may_print(actor, labelling)
    return _record(session, actor, target, reason, now, order_id=order.id, unit_id=unit.id)


def record_download(
    session: Session, *, actor: Actor, unit: Unit, order: Order, via: str, now: dt.datetime
) -> LabelPrint:
    """A bag's label file downloaded (the API, a page's link): whoever may see the bag may take
    it, and since it can be printed it is on record like a print (who, when, how)."""
    return _record(
        session, actor, DOWNLOAD, f"downloaded ({via})", now, order_id=order.id, unit_id=unit.id
    )


def print_shown(
    session: Session, *, actor: Actor, unit: Unit, print_id: int | None, now: dt.datetime
) -> bool:
    """Whether ``print_id`` is the actor's own print of this bag's label, just recorded (the
    print page shows the label it recorded without recording it twice)."""
    if print_id is None:
        return False
    row = session.get(LabelPrint, print_id)
    return (
        row is not None
        and row.unit_id == unit.id
        and row.user_id == actor.user_id
        and now - row.printed_at <= RECENT_PRINT
    )


def record_shipment_print(
    session: Session,
    *,
    actor: Actor,
    shipment: Shipment,
    order_id: int,
    target: str,
    reason: str | None,
    now: dt.datetime,
) -> LabelPrint:
    _may_print(actor, shipment.origin_site_id)
    return _record(session, actor, target, reason, now, order_id=order_id, shipment_id=shipment.id)


def _record(
    session: Session,
    actor: Actor,
    target: str,
    reason: str | None,
    now: dt.datetime,
    *,
    order_id: int | None,
    unit_id: int | None = None,
    shipment_id: int | None = None,
) -> LabelPrint:
    if target not in (*TARGETS, DOWNLOAD):
        raise InvalidRequest(f"a label is printed to {' or '.join(TARGETS)}")
    earlier = session.exec(
        select(func.count())
        .select_from(LabelPrint)
        .where(LabelPrint.unit_id == unit_id, LabelPrint.shipment_id == shipment_id)
    ).one()
    reason = (reason or "").strip() or None
    if earlier and reason is None:
        raise InvalidRequest(
            "this label was printed before: a reprint needs its reason (damaged, smudged, ...)"
        )
    assert order_id is not None
    row = LabelPrint(
        unit_id=unit_id,
        shipment_id=shipment_id,
        order_id=order_id,
        user_id=actor.user_id,
        copy_number=int(earlier) + 1,
        target=target,
        reason=reason,
        printed_at=now,
    )
    session.add(row)
    session.flush()
    return row


@dataclass(frozen=True)
class PrintRecord:
    what: str  # the DIN or the shipment code
    copy_number: int
    target: str
    reason: str | None
    by: str
    printed_at: dt.datetime


def prints_of(session: Session, order: Order) -> list[PrintRecord]:
    rows = session.exec(
        select(LabelPrint, User.email)
        .join(User, col(User.id) == col(LabelPrint.user_id))
        .where(LabelPrint.order_id == order.id)
        .order_by(col(LabelPrint.id))
    ).all()
    dins = {u.id: u.din for u in session.exec(select(Unit).where(Unit.order_id == order.id))}
    return [
        PrintRecord(
            what=dins.get(row.unit_id, "") if row.unit_id else shipment_code(row.shipment_id or 0),
            copy_number=row.copy_number,
            target=row.target,
            reason=row.reason,
            by=email,
            printed_at=row.printed_at,
        )
        for row, email in rows
    ]


def shipment_label_spec(session: Session, shipment: Shipment) -> ShipmentLabelSpec:
    """A shipper's label: its code, its route, and what it holds."""
    assert shipment.id is not None

    def named(site_id: int | None) -> str | None:
        site = session.get(Site, site_id) if site_id else None
        return f"{site.code} {site.name}" if site else None

    bags = session.exec(
        select(Unit, Order.coi)
        .join(ShipmentUnit, col(ShipmentUnit.unit_id) == col(Unit.id))
        .join(Order, col(Order.id) == col(Unit.order_id))
        .where(ShipmentUnit.shipment_id == shipment.id)
    ).all()
    return ShipmentLabelSpec(
        code=shipment_code(shipment.id),
        origin=named(shipment.origin_site_id) or "",
        destination=named(shipment.destination_site_id) or "",
        carrier=named(shipment.carrier_site_id),
        shipper=shipment.shipper_id,
        bags=len(bags),
        cois=tuple(sorted({coi for _unit, coi in bags})),
        packed_at=shipment.created_at,
    )
