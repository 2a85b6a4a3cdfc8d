"""Reads: orders, bags and their custody events, as the actor may see them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from services.db.models import (
    BatchInput,
    CustodyEvent,
    Order,
    RefusedScan,
    Scan,
    Shipment,
    ShipmentUnit,
    Site,
    Unit,
    User,
)
from services.domain.custody import Actor, UnitKind, UnitState
from services.domain.errors import NotFound
from services.domain.identifiers import batch_code, coi_reference, din_reference, shipment_code
from services.operations.access import visible_order


@dataclass(frozen=True)
class EventRecord:
    id: int
    sequence: int
    event_id: str | None
    coi: str
    din: str | None  # None: a batch's status change
    action: str
    from_state: UnitState | None
    to_state: UnitState | None
    site: str
    actor: str
    custodian: str
    shipment: str | None
    occurred_at: dt.datetime
    recorded_at: dt.datetime
    needs_review: bool
    review_reason: str | None
    batch: str | None = None
    batch_status: str | None = None
    reason: str | None = None
    corrects: int | None = None  # the sequence of the event a correction corrects
    details: dict[str, Any] | None = None  # a condition record's: its file, its alarms
    # what its step needed when recorded (none | signed | witnessed); None: not kept then
    signing: str | None = None


@dataclass(frozen=True)
class UnitRecord:
    din: str
    kind: UnitKind
    coi: str
    state: UnitState
    custodian: str
    custodian_kind: str
    shipment: str | None
    collected_at: dt.datetime
    volume_ml: float | None
    batch: str | None = None
    made_from: tuple[str, ...] = ()  # a product's apheresis bags
    products: tuple[str, ...] = ()  # an apheresis bag's products
    expires_at: dt.datetime | None = None  # a product bag's expiry


def unit_by_din(session: Session, actor: Actor, text: str) -> tuple[Unit, Order]:
    """A bag and its order, if the actor may see them; otherwise not found."""
    din = din_reference(text).value
    unit = session.exec(select(Unit).where(Unit.din == din)).first()
    order = session.get(Order, unit.order_id) if unit else None
    visible_order(session, actor, order, f"bag {din}")
    assert unit is not None
    assert order is not None
    return unit, order


def bag_by_din(session: Session, text: str) -> tuple[Unit, Order]:
    """A bag and its order, for the operator's command line (no site scoping)."""
    din = din_reference(text).value
    unit = session.exec(select(Unit).where(Unit.din == din)).first()
    if unit is None:
        raise NotFound(f"no bag {din}")
    order = session.get(Order, unit.order_id)
    assert order is not None
    return unit, order


def coi_value(text: str) -> str:
    return coi_reference(text).value


def unit_records(session: Session, units: list[Unit], coi: str) -> list[UnitRecord]:
    """Bags as read models, with their batch links both ways (product <-> apheresis bags)."""
    sites = {site.id: site for site in session.exec(select(Site)).all()}
    order_ids = {unit.order_id for unit in units}
    inputs: dict[int, list[tuple[int, str]]] = {}  # batch id -> its apheresis bags
    products: dict[int, list[str]] = {}  # batch id -> its product bags
    for batch_id, unit_id, din in session.exec(
        select(BatchInput.batch_id, Unit.id, Unit.din)
        .join(Unit, Unit.id == BatchInput.unit_id)  # type: ignore[arg-type]
        .where(col(Unit.order_id).in_(order_ids))
        .order_by(col(Unit.id))
    ).all():
        inputs.setdefault(batch_id, []).append((unit_id, din))  # type: ignore[arg-type]
    for made_by, din in session.exec(
        select(Unit.batch_id, Unit.din)
        .where(col(Unit.order_id).in_(order_ids), col(Unit.batch_id).is_not(None))
        .order_by(col(Unit.id))
    ).all():
        if made_by is not None:
            products.setdefault(made_by, []).append(din)
    consumed_by = {unit_id: batch_id for batch_id, rows in inputs.items() for unit_id, _ in rows}

    def links(unit: Unit) -> tuple[int | None, tuple[str, ...], tuple[str, ...]]:
        if unit.kind is UnitKind.PRODUCT and unit.batch_id is not None:
            made_from = tuple(din for _, din in inputs.get(unit.batch_id, []))
            return unit.batch_id, made_from, ()
        consumer = consumed_by.get(unit.id) if unit.id is not None else None
        return consumer, (), tuple(products.get(consumer, [])) if consumer else ()

    records = []
    for unit in units:
        link, made_from, made = links(unit)
        records.append(
            UnitRecord(
                din=unit.din,
                kind=unit.kind,
                coi=coi,
                state=unit.state,
                custodian=sites[unit.custodian_site_id].code,
                custodian_kind=sites[unit.custodian_site_id].kind.value,
                shipment=shipment_code(unit.shipment_id) if unit.shipment_id else None,
                collected_at=unit.collected_at,
                volume_ml=unit.volume_ml,
                batch=batch_code(link) if link else None,
                made_from=made_from,
                products=made,
                expires_at=unit.expires_at,
            )
        )
    return records


def units_of_order(session: Session, order: Order) -> list[Unit]:
    return list(
        session.exec(
            select(Unit).where(Unit.order_id == order.id).order_by(Unit.id)  # type: ignore[arg-type]
        ).all()
    )


def refusals_of_order(session: Session, order: Order) -> list[tuple[RefusedScan, str]]:
    """The refused scans of an order's bags, oldest first, with who scanned."""
    rows = session.exec(
        select(RefusedScan, User.email)
        .join(User, User.id == RefusedScan.actor_id)  # type: ignore[arg-type]
        .where(RefusedScan.order_id == order.id)
        .order_by(RefusedScan.id)  # type: ignore[arg-type]
    ).all()
    return [(refusal, email) for refusal, email in rows]


def order_events(session: Session, order: Order) -> list[EventRecord]:
    """The order's whole record, in its sequence."""
    return event_records(session, CustodyEvent.order_id == order.id)


@dataclass(frozen=True)
class EventStep:
    """What an event's signature and review are judged on, without the rest of its record:
    few columns, cheap to read for every event of a long order."""

    id: int
    sequence: int
    site: str
    action: str
    batch_status: str | None
    needs_review: bool
    signing: str | None = None


def order_event_steps(session: Session, order: Order) -> list[EventStep]:
    """Every event of the order as an EventStep, in its sequence."""
    rows = session.exec(
        select(  # type: ignore[call-overload]
            CustodyEvent.id,
            CustodyEvent.sequence,
            Site.code,
            CustodyEvent.action,
            CustodyEvent.batch_state,
            CustodyEvent.needs_review,
            CustodyEvent.signing,
        )
        .join(Site, Site.id == CustodyEvent.site_id)
        .where(CustodyEvent.order_id == order.id)
        .order_by(CustodyEvent.sequence)
    ).all()
    return [
        EventStep(id, sequence, site, action, batch.value if batch else None, review, signing)
        for id, sequence, site, action, batch, review, signing in rows
    ]


def order_events_among(
    session: Session, order: Order, *, from_sequence: int, earlier: Sequence[int]
) -> list[EventRecord]:
    """The order's events from ``from_sequence`` on, and the earlier ones whose ids are in
    ``earlier``, in their sequence."""
    return event_records(
        session,
        CustodyEvent.order_id == order.id,
        or_(col(CustodyEvent.sequence) >= from_sequence, col(CustodyEvent.id).in_(earlier)),
    )


def unit_events(session: Session, unit: Unit) -> list[EventRecord]:
    """A bag's events, oldest first."""
    return event_records(session, CustodyEvent.unit_id == unit.id)


def event_record_of(event: CustodyEvent, scan_event_id: str | None) -> EventRecord | None:
    """An event just written, as event_records would read it back, from the identities it
    sealed (None when it sealed none: an event from before identities were sealed)."""
    sealed = event.identity or {}
    if event.id is None or "custodian" not in sealed or event.corrects_id is not None:
        return None
    return _event_record(
        event,
        event_id=scan_event_id,
        coi=sealed["coi"],
        din=sealed["din"],
        site=sealed["site"],
        actor=sealed["actor"],
        custodian=sealed["custodian"],
        corrects=None,
    )


def _event_record(
    event: CustodyEvent,
    *,
    event_id: str | None,
    coi: str,
    din: str | None,
    site: str,
    actor: str,
    custodian: str,
    corrects: int | None,
) -> EventRecord:
    assert event.id is not None
    return EventRecord(
        id=event.id,
        sequence=event.sequence,
        event_id=event_id,
        coi=coi,
        din=din,
        action=event.action,
        from_state=event.from_state,
        to_state=event.to_state,
        site=site,
        actor=actor,
        custodian=custodian,
        shipment=shipment_code(event.shipment_id) if event.shipment_id else None,
        occurred_at=event.occurred_at,
        recorded_at=event.recorded_at,
        needs_review=event.needs_review,
        review_reason=event.review_reason,
        batch=batch_code(event.batch_id) if event.batch_id else None,
        batch_status=event.batch_state.value if event.batch_state else None,
        reason=event.reason,
        corrects=corrects,
        details=event.details,
        signing=event.signing,
    )


def events_by_id(session: Session, ids: list[int]) -> list[EventRecord]:
    return event_records(session, col(CustodyEvent.id).in_(ids)) if ids else []


def event_records(session: Session, *conditions: object) -> list[EventRecord]:
    """Custody events matching ``conditions``, oldest first, with codes instead of ids."""
    site = aliased(Site)
    custodian = aliased(Site)
    statement = (
        select(  # type: ignore[call-overload]
            CustodyEvent, Unit.din, Order.coi, site.code, custodian.code, User.email, Scan.event_id
        )
        .outerjoin(Unit, Unit.id == CustodyEvent.unit_id)
        .join(Order, Order.id == CustodyEvent.order_id)
        .join(site, site.id == CustodyEvent.site_id)
        .join(custodian, custodian.id == CustodyEvent.custodian_site_id)
        .join(User, User.id == CustodyEvent.actor_id)
        .outerjoin(Scan, Scan.id == CustodyEvent.scan_id)
        .where(*conditions)
        .order_by(CustodyEvent.order_id, CustodyEvent.sequence)
    )
    rows = session.exec(statement).all()
    wanted = [event.corrects_id for event, *_ in rows if event.corrects_id]
    corrected = (
        dict(
            session.exec(
                select(CustodyEvent.id, CustodyEvent.sequence).where(
                    col(CustodyEvent.id).in_(wanted)
                )
            ).all()
        )
        if wanted
        else {}
    )
    return [
        _event_record(
            event,
            event_id=event_id,
            coi=coi,
            din=din,
            site=site_code,
            actor=email,
            custodian=custodian_code,
            corrects=corrected.get(event.corrects_id) if event.corrects_id else None,
        )
        for event, din, coi, site_code, custodian_code, email, event_id in rows
    ]


def shipment_units(session: Session, shipment: Shipment) -> list[Unit]:
    return list(
        session.exec(
            select(Unit)
            .join(ShipmentUnit, ShipmentUnit.unit_id == Unit.id)  # type: ignore[arg-type]
            .where(ShipmentUnit.shipment_id == shipment.id)
            .order_by(Unit.id)  # type: ignore[arg-type]
        ).all()
    )
