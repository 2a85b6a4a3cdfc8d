"""Orders, collections, and reading bags and their custody events."""

from __future__ import annotations

from flask import Response, jsonify

from services.domain.errors import SignatureRefused
from services.operations import orders as order_ops
from services.operations import signing
from services.operations.access import order_by_coi
from services.operations.queries import (
    coi_value,
    events_by_id,
    unit_by_din,
    unit_events,
    unit_records,
)
from services.web.api.blueprint import api, orders_tag
from services.web.api.present import (
    audit_public,
    event_public,
    order_public,
    signature_public,
    timeline_events,
    unit_public,
)
from services.web.api.schemas import (
    AuditPublic,
    CollectionCreate,
    CorrectionCreate,
    EventList,
    EventPublic,
    OrderCreate,
    OrderPath,
    OrderPublic,
    OrderTimeline,
    SignatureCreate,
    SignaturePath,
    SignaturePublic,
    UnitPath,
    UnitPublic,
)
from services.web.errors import domain_problem
from services.web.state import current_actor, login_policy, max_clock_skew, unit_of_work, utcnow


@api.post("/orders", tags=[orders_tag], responses={201: OrderPublic})
def enroll_order(body: OrderCreate) -> tuple[Response, int]:
    """Enroll an order: a new chain of identity (COI) for one patient's therapy."""
    actor = current_actor()
    with unit_of_work() as uow:
        order = order_ops.enroll_order(
            uow.session,
            actor=actor,
            patient_ref=body.patient_ref,
            product=body.product,
            collection_site=body.collection_site,
            manufacturing_site=body.manufacturing_site,
            treatment_site=body.treatment_site,
            now=utcnow(),
            patient_birth_date=body.patient_birth_date,
            patient_name=body.patient_name,
        )
        before = order_ops.enrolled_before(uow.session, actor, body.patient_ref, excluding=order.id)
        uow.commit()
        result = order_public(uow.session, actor, order)
    result.warnings = [
        f"patient reference enrolled already in order {earlier.coi} ({earlier.product}, "
        f"{earlier.state.value.replace('_', ' ')})"
        for earlier in before
    ]
    return jsonify(result.model_dump(mode="json")), 201


@api.get("/orders/<coi>", tags=[orders_tag], responses={200: OrderPublic})
def read_order(path: OrderPath) -> Response:
    """The order and its bags."""
    actor = current_actor()
    with unit_of_work() as uow:
        order = order_by_coi(uow.session, actor, coi_value(path.coi))
        result = order_public(uow.session, actor, order)
    return jsonify(result.model_dump(mode="json"))


@api.post("/orders/<coi>/collections", tags=[orders_tag], responses={201: UnitPublic})
def register_collection(path: OrderPath, body: CollectionCreate) -> tuple[Response, int]:
    """Register a collected apheresis bag: a new DIN on the order's chain of identity."""
    actor = current_actor()
    with unit_of_work() as uow:
        unit, _event = order_ops.register_collection(
            uow.session,
            actor=actor,
            coi=coi_value(path.coi),
            collected_at=body.collected_at,
            volume_ml=body.volume_ml,
            now=utcnow(),
            max_clock_skew=max_clock_skew(),
        )
        uow.commit()
        order = order_by_coi(uow.session, actor, coi_value(path.coi))
        (record,) = unit_records(uow.session, [unit], order.coi)
    return jsonify(unit_public(record).model_dump(mode="json")), 201


@api.get("/units/<din>", tags=[orders_tag], responses={200: UnitPublic})
def read_unit(path: UnitPath) -> Response:
    """A bag: its state, who holds it, where, and its chain of identity."""
    with unit_of_work() as uow:
        unit, order = unit_by_din(uow.session, current_actor(), path.din)
        (record,) = unit_records(uow.session, [unit], order.coi)
    return jsonify(unit_public(record).model_dump(mode="json"))


@api.get("/units/<din>/events", tags=[orders_tag], responses={200: EventList})
def read_unit_events(path: UnitPath) -> Response:
    """A bag's custody events, oldest first."""
    with unit_of_work() as uow:
        unit, order = unit_by_din(uow.session, current_actor(), path.din)
        records = unit_events(uow.session, unit)
    result = EventList(din=unit.din, coi=order.coi, events=[event_public(r) for r in records])
    return jsonify(result.model_dump(mode="json"))


@api.get("/orders/<coi>/events", tags=[orders_tag], responses={200: OrderTimeline})
def read_order_events(path: OrderPath) -> Response:
    """The order's whole record: its bags' custody events, its batches' status changes, the
    corrections, and for each critical step its signatures (printed name, time, meaning)."""
    with unit_of_work() as uow:
        order = order_by_coi(uow.session, current_actor(), coi_value(path.coi))
        result = OrderTimeline(coi=order.coi, events=timeline_events(uow.session, order))
    return jsonify(result.model_dump(mode="json"))


@api.post("/orders/<coi>/corrections", tags=[orders_tag], responses={201: EventPublic})
def correct_event(path: OrderPath, body: CorrectionCreate) -> tuple[Response, int]:
    """Correct an event: a new event pointing at it, with a reason (QA or admin), e-signed in
    the same request (``signature.password``). The event corrected is never changed; both
    show in the timeline, the correction with its signature."""
    actor = current_actor()
    with unit_of_work() as uow:
        try:
            event = signing.correct_event(
                uow.session,
                actor=actor,
                coi=coi_value(path.coi),
                sequence=body.sequence,
                reason=body.reason,
                now=utcnow(),
                password=body.signature.password if body.signature else None,
                policy=login_policy(),
            )
        except SignatureRefused:
            uow.commit()  # the failed attempt counts for this client
            raise
        uow.commit()
        assert event.id is not None
        (record,) = events_by_id(uow.session, [event.id])
    return jsonify(event_public(record).model_dump(mode="json")), 201


@api.post(
    "/orders/<coi>/events/<int:sequence>/signatures",
    tags=[orders_tag],
    responses={201: SignaturePublic},
)
def sign_event(path: SignaturePath, body: SignatureCreate) -> Response | tuple[Response, int]:
    """Sign a critical step: your e-mail and password again, and what your signature means.
    The signature is bound to the hash of the record it signs."""
    actor = current_actor()
    with unit_of_work() as uow:
        try:
            row = signing.sign(
                uow.session,
                actor=actor,
                coi=coi_value(path.coi),
                sequence=path.sequence,
                email=body.email,
                password=body.password,
                meaning=body.meaning,
                now=utcnow(),
                policy=login_policy(),
            )
        except SignatureRefused as error:
            uow.commit()  # the failed attempt counts towards the lock-out
            return domain_problem(error)
        uow.commit()
        result = signature_public(row, actor.email)
    return jsonify(result.model_dump(mode="json")), 201


@api.get("/orders/<coi>/audit", tags=[orders_tag], responses={200: AuditPublic})
def read_order_audit(path: OrderPath) -> Response:
    """The order's hash chain (custody events and refused scans), its signatures, and the
    verification of the chain as it is now."""
    with unit_of_work() as uow:
        order = order_by_coi(uow.session, current_actor(), coi_value(path.coi))
        result = audit_public(uow.session, order)
    return jsonify(result.model_dump(mode="json"))
