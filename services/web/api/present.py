"""Rows and records to response models."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlmodel import Session

from services.db.cache import site_code
from services.domain.batches import BatchState
from services.domain.custody import Actor
from services.domain.identifiers import Coi, Din, batch_code, label_payload, shipment_code
from services.operations import audit, shippers, signing
from services.operations.access import may_see_patient_ref
from services.operations.batches import BatchRecord, batches_of_order
from services.operations.directory import Directory
from services.operations.queries import (
    EventRecord,
    UnitRecord,
    event_record_of,
    events_by_id,
    order_event_steps,
    order_events,
    order_events_among,
    refusals_of_order,
    shipment_units,
    unit_records,
    units_of_order,
)
from services.operations.scans import ScanOutcome
from services.operations.shipments import received_from
from services.operations.turnaround import deadlines_of, projection

if TYPE_CHECKING:
    from services.db.models import Deadline, Order, Shipment, Signature

from services.web.api.schemas import (
    AuditLink,
    AuditPublic,
    BatchPublic,
    BatchStepPublic,
    DeadlinePublic,
    EventPublic,
    OrderPublic,
    RefusalPublic,
    ScanResult,
    ShipmentPublic,
    SignaturePublic,
    TurnaroundPublic,
    UnitPublic,
)


def unit_public(record: UnitRecord) -> UnitPublic:
    din = Din.from_value(record.din)
    if record.state.value == "in_transit":
        location = f"in transit with {record.custodian}"
        if record.shipment:
            location += f" ({record.shipment})"
    else:
        location = f"at {record.custodian} ({record.custodian_kind})"
    return UnitPublic(
        din=din.value,
        check_character=din.check_character,
        barcode=din.barcode,
        eye_readable=din.eye_readable,
        kind=record.kind,
        coi=record.coi,
        state=record.state,
        custodian=record.custodian,
        location=location,
        shipment=record.shipment,
        collected_at=record.collected_at,
        volume_ml=record.volume_ml,
        batch=record.batch,
        expires_at=record.expires_at,
        label_2d=label_payload(din, Coi.from_value(record.coi)),
        made_from=list(record.made_from),
        products=list(record.products),
    )


def deadline_public(session: Session, row: Deadline, now: dt.datetime) -> DeadlinePublic:
    names = Directory(session)
    order, unit = names.order(row.order_id), names.unit(row.unit_id)
    if row.closed_at is not None:
        status = "closed_late" if row.closed_at > row.due_at else "closed_on_time"
    elif now >= row.due_at:
        status = "late"
    elif now >= row.at_risk_at:
        status = "at_risk"
    else:
        status = "on_time"
    overdue = ((row.closed_at or now) - row.due_at).total_seconds() / 3600
    return DeadlinePublic(
        coi=order.coi,
        din=unit.din,
        leg=row.leg.value,
        site=names.code(row.site_id),
        status=status,  # type: ignore[arg-type]
        started_at=row.started_at,
        at_risk_at=row.at_risk_at,
        due_at=row.due_at,
        closed_at=row.closed_at,
        overdue_hours=round(max(0.0, overdue), 2),
        at_risk_flagged_at=row.at_risk_flagged_at,
        late_flagged_at=row.late_flagged_at,
        escalated_at=row.escalated_at,
        policy_version=row.policy_version,
    )


def order_public(session: Session, actor: Actor, order: Order) -> OrderPublic:
    coi = Coi.from_value(order.coi)
    names = Directory(session)
    bags = units_of_order(session, order)
    names.remember([order, *bags])
    units = unit_records(session, bags, order.coi)
    now = dt.datetime.now(dt.UTC)
    deadlines = deadlines_of(session, order)
    return OrderPublic(
        coi=coi.value,
        check_character=coi.check_character,
        eye_readable=coi.eye_readable,
        barcode=coi.barcode,
        state=order.state,
        product=order.product,
        patient_ref=order.current_patient_ref if may_see_patient_ref(actor, order) else None,
        patient_birth_date=order.patient_birth_date if may_see_patient_ref(actor, order) else None,
        patient_name=order.patient_name if may_see_patient_ref(actor, order) else None,
        collection_site=names.code(order.collection_site_id),
        manufacturing_site=names.code(order.manufacturing_site_id),
        treatment_site=names.code(order.treatment_site_id),
        created_at=order.created_at,
        units=[unit_public(record) for record in units],
        refusals=[
            RefusalPublic(
                code=refusal.code,
                detail=refusal.detail,
                action=refusal.action,
                barcode=refusal.barcode,
                site=refusal.site_code,
                actor=email,
                event_id=refusal.event_id,
                occurred_at=refusal.occurred_at,
                recorded_at=refusal.recorded_at,
            )
            for refusal, email in refusals_of_order(session, order)
        ],
        deadlines=[deadline_public(session, row, now) for row in deadlines],
        batches=[batch_public(session, r) for r in batches_of_order(session, order)],
        turnaround=TurnaroundPublic(
            **vars(projection(session, order=order, now=now, deadlines=deadlines))
        ),
    )


def event_public(record: EventRecord) -> EventPublic:
    return EventPublic(
        sequence=record.sequence,
        event_id=record.event_id,
        coi=record.coi,
        din=record.din,
        action=record.action,
        from_state=record.from_state,
        to_state=record.to_state,
        site=record.site,
        actor=record.actor,
        custodian=record.custodian,
        shipment=record.shipment,
        occurred_at=record.occurred_at,
        recorded_at=record.recorded_at,
        needs_review=record.needs_review,
        review_reason=record.review_reason,
        batch=record.batch,
        batch_status=BatchState(record.batch_status) if record.batch_status else None,
        reason=record.reason,
        corrects=record.corrects,
        details=record.details,
        signing=record.signing,
    )


def timeline_events(session: Session, order: Order) -> list[EventPublic]:
    """The order's events in sequence, each with its signatures and whether it awaits one."""
    records = order_events(session, order)
    signed = audit.signatures_of(session, [record.id for record in records], order_id=order.id)
    status = signing.signature_status(
        session, records, {event_id: [row for row, _ in rows] for event_id, rows in signed.items()}
    )
    return _signed_events(records, signed, status)


@dataclass(frozen=True)
class TimelineWindow:
    events: list[EventPublic]
    total: int  # the order's events in all
    left_out: int  # earlier events not in ``events``
    first: int  # the sequence of the order's first event


def timeline_window(
    session: Session, order: Order, *, latest: int | None, also: Collection[int] = ()
) -> TimelineWindow:
    """The order's latest ``latest`` events (None: all), with every earlier one that awaits a
    signature or is flagged for review, and those whose sequence is in ``also``: what a person
    acts on, without reading and drawing the whole record of a long order."""
    steps = order_event_steps(session, order)
    signed = audit.signatures_of(session, [step.id for step in steps], order_id=order.id)
    status = signing.signature_status(
        session, steps, {event_id: [row for row, _ in rows] for event_id, rows in signed.items()}
    )
    if latest is None or len(steps) <= latest:
        records = order_events(session, order)
    else:
        recent = steps[-latest].sequence
        earlier = [
            step.id
            for step in steps[:-latest]
            if step.needs_review or status[step.id] in signing.AWAITING or step.sequence in also
        ]
        records = order_events_among(session, order, from_sequence=recent, earlier=earlier)
    return TimelineWindow(
        events=_signed_events(records, signed, status),
        total=len(steps),
        left_out=len(steps) - len(records),
        first=steps[0].sequence if steps else 0,
    )


def _signed_events(
    records: list[EventRecord],
    signed: dict[int, list[tuple[Signature, str]]],
    status: dict[int, signing.SignatureStatus],
) -> list[EventPublic]:
    events = []
    for record in records:
        event = event_public(record)
        event.signature = status[record.id]
        event.signatures = [
            signature_public(row, email) for row, email in signed.get(record.id, [])
        ]
        events.append(event)
    return events


def batch_public(session: Session, record: BatchRecord) -> BatchPublic:
    batch = record.batch
    assert batch.id is not None
    names = Directory(session)
    emails = {user_id: names.email(user_id) for user_id in {e.actor_id for e in record.history}}
    return BatchPublic(
        id=batch.id,
        code=batch_code(batch.id),
        coi=record.order.coi,
        site=names.code(batch.site_id),
        state=batch.state,
        opened_at=batch.opened_at,
        updated_at=batch.updated_at,
        failure_reason=batch.failure_reason,
        release_signed_at=batch.release_signed_at,
        inputs=[unit.din for unit in record.inputs],
        products=[unit_public(r) for r in unit_records(session, record.products, record.order.coi)],
        history=[
            BatchStepPublic(
                sequence=event.sequence,
                status=event.batch_state,  # type: ignore[arg-type]
                reason=event.reason,
                actor=emails[event.actor_id],
                occurred_at=event.occurred_at,
                recorded_at=event.recorded_at,
            )
            for event in record.history
        ],
    )


def scan_result(session: Session, actor: Actor, outcome: ScanOutcome) -> ScanResult:
    # what the scan just wrote is answered from memory; a replay reads the record
    fresh = [event_record_of(event, outcome.scan.event_id) for event in outcome.events]
    records: list[EventRecord] = [record for record in fresh if record is not None]
    if outcome.replayed or len(records) != len(fresh):
        ids = [event.id for event in outcome.events]
        records = events_by_id(session, [i for i in ids if i is not None])
    events = [event_public(record) for record in records]
    if outcome.replayed:
        signed = audit.signatures_of(session, [record.id for record in records])
        given = [row for rows in signed.values() for row, _email in rows]
    else:
        given = outcome.signatures
    for event, record in zip(events, records, strict=True):
        event.signatures = [
            signature_public(row, row.signer_email or "")
            for row in given
            if row.event_id == record.id
        ]
    single = events[0] if len(events) == 1 else None
    return ScanResult(
        event_id=outcome.scan.event_id,
        action=outcome.scan.action,
        site=site_code(session, outcome.scan.site_id),
        actor=records[0].actor if records else actor.email,
        occurred_at=outcome.scan.occurred_at,
        recorded_at=outcome.scan.recorded_at,
        shipment=shipment_code(outcome.scan.shipment_id) if outcome.scan.shipment_id else None,
        replayed=outcome.replayed,
        din=single.din if single else None,
        coi=single.coi if single else None,
        from_state=single.from_state if single else None,
        to_state=single.to_state if single else None,
        sequence=single.sequence if single else None,
        needs_review=any(event.needs_review for event in events),
        events=events,
    )


def shipment_public(session: Session, shipment: Shipment) -> ShipmentPublic:
    assert shipment.id is not None
    code = Directory(session).site_code
    manifest = shipment_units(session, shipment)
    arrived = received_from(session, shipment)

    return ShipmentPublic(
        id=shipment.id,
        barcode=shipment_code(shipment.id),
        shipper_id=shipment.shipper_id,
        origin=code(shipment.origin_site_id) or "",
        destination=code(shipment.destination_site_id) or "",
        carrier=code(shipment.carrier_site_id),
        state=shipment.state,
        units=[unit.din for unit in manifest],
        created_at=shipment.created_at,
        received=[unit.din for unit in manifest if unit.din in arrived],
        outstanding=[unit.din for unit in manifest if unit.din not in arrived],
        reconciled_at=shipment.reconciled_at,
        cancelled_at=shipment.cancelled_at,
        cancel_reason=shipment.cancel_reason,
        missing=shipment.missing,
        warnings=shippers.shipment_warnings(session, shipment),
    )


def audit_public(session: Session, order: Order) -> AuditPublic:
    chain = audit.order_chain(session, order)
    report = audit.verify(session, order_id=order.id, links=chain)
    dins = {unit.id: unit.din for unit in units_of_order(session, order)}
    signed = audit.signatures_of(
        session, [item.id for item in chain if item.table == "custody_events"], order_id=order.id
    )
    return AuditPublic(
        coi=order.coi,
        verified=report.ok,
        finding=str(report.finding) if report.finding else None,
        records=[
            AuditLink(
                position=item.position,
                record="custody_event" if item.table == "custody_events" else "refused_scan",
                sequence=item.content.get("sequence"),
                action=item.content["action"],
                din=dins.get(item.content["unit_id"]) if item.content["unit_id"] else None,
                code=item.content.get("code"),
                recorded_at=item.content["recorded_at"],
                prev_hash=item.prev_hash,
                hash=item.hash,
                signatures=[
                    signature_public(row, email)
                    for row, email in signed.get(item.id, [])
                    if item.table == "custody_events"
                ],
            )
            for item in chain
        ],
    )


def signature_public(row: Signature, email: str) -> SignaturePublic:
    return SignaturePublic(
        printed_name=row.printed_name,
        signer=email,
        meaning=row.meaning,  # type: ignore[arg-type]
        witness=row.witness,
        signed_at=row.signed_at,
        record_hash=row.record_hash,
    )
