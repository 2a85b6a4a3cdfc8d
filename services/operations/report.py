"""What an order's chain-of-custody report shows, read from the record (the PDF is drawn by
services.documents.report_pdf from this, and from nothing else)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlmodel import Session, col, select

from services.db.models import ChainHead, CustodyEvent, Order, Scan, Shipment
from services.domain.audit import chain_key
from services.domain.custody import Actor
from services.domain.errors import NotFound
from services.domain.evidence import decode_key, fingerprint, key_id
from services.domain.identifiers import Coi, batch_code, shipment_code
from services.operations import access, audit, condition
from services.operations.batches import BatchRecord, batches_of_order
from services.operations.directory import Directory
from services.operations.queries import (
    EventRecord,
    order_events,
    refusals_of_order,
    shipment_units,
    units_of_order,
)
from services.operations.shipments import received_from


@dataclass(frozen=True)
class SignatureLine:
    sequence: int
    printed_name: str
    email: str
    meaning: str
    witness: bool
    signed_at: dt.datetime


@dataclass(frozen=True)
class ShipmentLine:
    code: str
    shipper: str
    origin: str
    destination: str
    carrier: str | None
    state: str
    manifest: list[str]
    received: list[str]
    missing: list[str] | None
    reconciled_at: dt.datetime | None


@dataclass(frozen=True)
class ConditionLine:
    shipment: str
    devices: list[tuple[str, int, float, float, float]]  # device, count, min, max, mean
    alarms: list[str]


@dataclass(frozen=True)
class ReportData:
    coi: str
    coi_readable: str  # with its check character, as people read and type it
    product: str
    sites: dict[str, str]  # role -> code
    patient_ref: str | None
    state: str
    units: list[tuple[str, str, str, str]]  # DIN, kind, state, custodian
    events: list[EventRecord]
    identity: dict[int, str]  # sequence -> the identity checks the step passed
    signatures: list[SignatureLine]
    shipments: list[ShipmentLine]
    batches: list[tuple[str, str, list[str], list[str], str | None]]  # code, state, in, out, why
    refusals: list[tuple[dt.datetime, str, str, str, str]]  # when, action, site, code, detail
    conditions: list[ConditionLine]
    verified: bool
    finding: str | None
    chain_length: int
    chain_head: str
    as_of: (
        dt.datetime
    )  # the newest record: the report's only date, so the same record reads the same
    # the key that signs this installation's evidence bundles (None: they are unsigned)
    signing_key_id: str | None = None
    signing_key_fingerprint: str | None = None


def report_data(
    session: Session, *, actor: Actor | None, coi: str, signing_key: str | None = None
) -> ReportData:
    """``signing_key``: the public key (base64) that signs the installation's exports."""
    if actor is not None:
        order = access.order_by_coi(session, actor, coi)
    else:
        found = session.exec(select(Order).where(Order.coi == coi)).first()
        if found is None:
            raise NotFound(f"no order {coi}")
        order = found
    directory = Directory(session)
    events = order_events(session, order)
    check = audit.verify(session, order_id=order.id)
    head = session.get(ChainHead, chain_key(order.id))
    signed = audit.signatures_of(session, [e.id for e in events], order_id=order.id)
    sequences = {e.id: e.sequence for e in events}
    signatures = [
        SignatureLine(
            sequences[event_id], row.printed_name, email, row.meaning, row.witness, row.signed_at
        )
        for event_id, rows in sorted(signed.items(), key=lambda kv: sequences[kv[0]])
        for row, email in rows
    ]
    units = units_of_order(session, order)
    refusals = refusals_of_order(session, order)
    refs = _scan_ids(session, order)
    scans = {
        scan.id: scan
        for scan in session.exec(select(Scan).where(col(Scan.id).in_([r.scan_id for r in refs])))
        if scan.id is not None
    }
    identity = _identity_checks(events, scans, refs)
    shipments = [
        _shipment(session, directory, s) for s in condition.shipments_of_order(session, order)
    ]
    may_see = actor is None or access.may_see_patient_ref(actor, order)
    times = [e.recorded_at for e in events] + [r.recorded_at for r, _ in refusals]
    return ReportData(
        coi=order.coi,
        coi_readable=Coi.from_value(order.coi).keyboard_entry,
        product=order.product,
        sites={
            "collection": directory.code(order.collection_site_id),
            "manufacturing": directory.code(order.manufacturing_site_id),
            "treatment": directory.code(order.treatment_site_id),
        },
        patient_ref=order.patient_ref if may_see else None,
        state=order.state.value,
        units=[
            (u.din, u.kind.value, u.state.value, directory.code(u.custodian_site_id)) for u in units
        ],
        events=events,
        identity=identity,
        signatures=signatures,
        shipments=shipments,
        batches=[_batch(record) for record in batches_of_order(session, order)],
        refusals=[
            (r.recorded_at, r.action, r.site_code, r.code, r.detail) for r, _email in refusals
        ],
        conditions=[
            ConditionLine(
                shipment=shipment_code(found.shipment.id or 0),
                devices=[
                    (s.device_id, s.count, s.min_c, s.max_c, s.mean_c) for s in found.summaries
                ],
                alarms=[a.description for a in found.alarms],
            )
            for found in (
                condition.order_conditions(session, actor, order)
                if actor is not None
                else [
                    condition.shipment_condition(session, s)
                    for s in condition.shipments_of_order(session, order)
                ]
            )
        ],
        verified=check.ok,
        finding=str(check.finding) if check.finding else None,
        chain_length=head.length if head else 0,
        chain_head=head.head if head else "",
        as_of=max(times) if times else order.created_at,
        signing_key_id=key_id(decode_key(signing_key)) if signing_key else None,
        signing_key_fingerprint=fingerprint(decode_key(signing_key)) if signing_key else None,
    )


@dataclass(frozen=True)
class _ScanRef:
    sequence: int
    scan_id: int


def _scan_ids(session: Session, order: Order) -> list[_ScanRef]:
    return [
        _ScanRef(sequence, scan_id)
        for sequence, scan_id in session.exec(
            select(CustodyEvent.sequence, CustodyEvent.scan_id).where(
                CustodyEvent.order_id == order.id, col(CustodyEvent.scan_id).is_not(None)
            )
        ).all()
        if scan_id is not None
    ]


def _identity_checks(
    events: list[EventRecord], scans: dict[int, Scan], refs: list[_ScanRef]
) -> dict[int, str]:
    """What each step checked of the bag's identity, from the scan that made it."""
    by_sequence = {ref.sequence: scans.get(ref.scan_id) for ref in refs}
    found: dict[int, str] = {}
    for event in events:
        scan = by_sequence.get(event.sequence)
        if event.action == "enroll":
            found[event.sequence] = "COI issued; patient and sites sealed"
        elif event.action in ("collect", "produce"):
            found[event.sequence] = f"DIN {event.din} issued on this COI"
        elif scan is not None:
            checks = [f"DIN {event.din} scanned, on this COI"]
            if "&/" in scan.barcode:  # the label's QR code carries DIN and COI together
                checks.append("COI read from the label's 2-D code matched")
            if event.shipment:
                checks.append(f"on the manifest of {event.shipment}")
            if event.action == "infuse":
                checks.append("patient matched at the bedside")
            found[event.sequence] = "; ".join(checks)
    return found


def _shipment(session: Session, directory: Directory, shipment: Shipment) -> ShipmentLine:
    manifest = [u.din for u in shipment_units(session, shipment)]
    arrived = received_from(session, shipment)
    return ShipmentLine(
        code=shipment_code(shipment.id or 0),
        shipper=shipment.shipper_id,
        origin=directory.code(shipment.origin_site_id),
        destination=directory.code(shipment.destination_site_id),
        carrier=directory.site_code(shipment.carrier_site_id),
        state=shipment.state.value,
        manifest=manifest,
        received=[d for d in manifest if d in arrived],
        missing=shipment.missing,
        reconciled_at=shipment.reconciled_at,
    )


def _batch(record: BatchRecord) -> tuple[str, str, list[str], list[str], str | None]:
    return (
        batch_code(record.batch.id or 0),
        record.batch.state.value,
        [u.din for u in record.inputs],
        [u.din for u in record.products],
        record.batch.failure_reason,
    )
