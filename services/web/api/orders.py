"""Orders, collections, and reading bags and their custody events."""

from __future__ import annotations

from flask import Response, jsonify

from services.db.models import CustodyEvent
from services.operations import orders as order_ops
from services.operations.access import order_by_coi
from services.operations.queries import coi_value, event_records, unit_by_din, unit_records
from services.web.api.blueprint import api, orders_tag
from services.web.api.present import audit_public, event_public, order_public, unit_public
from services.web.api.schemas import (
    AuditPublic,
    CollectionCreate,
    EventList,
    OrderCreate,
    OrderPath,
    OrderPublic,
    OrderTimeline,
    UnitPath,
    UnitPublic,
)
from services.web.state import current_actor, max_clock_skew, unit_of_work, utcnow


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
        )
        uow.commit()
        result = order_public(uow.session, actor, order)
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
        records = event_records(uow.session, CustodyEvent.unit_id == unit.id)
    result = EventList(din=unit.din, coi=order.coi, events=[event_public(r) for r in records])
    return jsonify(result.model_dump(mode="json"))


@api.get("/orders/<coi>/events", tags=[orders_tag], responses={200: OrderTimeline})
def read_order_events(path: OrderPath) -> Response:
    """The order's whole record: its bags' custody events and its batches' status changes."""
    with unit_of_work() as uow:
        order = order_by_coi(uow.session, current_actor(), coi_value(path.coi))
        records = event_records(uow.session, CustodyEvent.order_id == order.id)
    result = OrderTimeline(coi=order.coi, events=[event_public(r) for r in records])
    return jsonify(result.model_dump(mode="json"))


@api.get("/orders/<coi>/audit", tags=[orders_tag], responses={200: AuditPublic})
def read_order_audit(path: OrderPath) -> Response:
    """The order's hash chain (custody events and refused scans), its signatures, and the
    verification of the chain as it is now."""
    with unit_of_work() as uow:
        order = order_by_coi(uow.session, current_actor(), coi_value(path.coi))
        result = audit_public(uow.session, order)
    return jsonify(result.model_dump(mode="json"))
